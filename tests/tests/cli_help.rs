//! Every binary says what it is: `--version` prints its name and the
//! workspace's version, `--help` describes that binary (not another's
//! package description) and lists its commands.

use std::process::{Command, Stdio};

use transcode_tests::bin;

/// Runs `name args` with no stdin; (exit code, stdout).
fn run(name: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{name} runs: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn every_binary_names_its_version() {
    for name in ["transcode-orchestrator", "transcode-worker", "transcodectl"] {
        let (code, out) = run(name, &["--version"]);
        assert_eq!(code, 0, "{name} --version");
        assert_eq!(
            out.trim(),
            format!("{name} {}", transcode_common::VERSION),
            "{name} --version"
        );
    }
}

#[test]
fn every_binary_describes_itself_and_its_commands() {
    let cases: [(&str, &str, &[&str], &[&str]); 3] = [
        (
            "transcodectl",
            "Submit, follow, list and cancel transcode jobs",
            &[
                "submit",
                "jobs",
                "workers",
                "ls",
                "cancel",
                "--orchestrator",
            ],
            &["Registry of workers", "embeds the MQTT broker"],
        ),
        (
            "transcode-orchestrator",
            "The transcode-worker orchestrator: embedded MQTT broker",
            &[
                "add-worker",
                "revoke-worker",
                "logins",
                "new-token",
                "--config",
            ],
            &["Submit, follow"],
        ),
        (
            "transcode-worker",
            "A transcode-worker machine",
            &["run", "probe", "join", "--config"],
            &["Registry of workers"],
        ),
    ];
    for (name, says, lists, never) in cases {
        let (code, out) = run(name, &["--help"]);
        assert_eq!(code, 0, "{name} --help");
        assert!(out.contains(says), "{name} --help says {says:?}:\n{out}");
        assert!(
            out.contains(&format!("Usage: {name}")),
            "{name} --help has its usage:\n{out}"
        );
        for word in lists {
            assert!(out.contains(word), "{name} --help lists {word}:\n{out}");
        }
        for wrong in never {
            assert!(!out.contains(wrong), "{name} --help says {wrong:?}:\n{out}");
        }
    }
}
