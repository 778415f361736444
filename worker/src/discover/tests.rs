use super::*;

fn svc(name: &str, addrs: &[&str], port: u16, prefix: Option<&str>) -> Service {
    Service {
        fullname: name.into(),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        port,
        prefix: prefix.map(str::to_string),
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn candidates_are_only_ours_and_never_held() {
    let house = svc("house-mosquitto", &["10.0.0.9"], 1883, None);
    let zigbee = svc("zigbee", &["10.0.0.3"], 1885, Some("zigbee2mqtt"));
    let shouting = svc("shouting", &["10.0.0.5"], 1886, Some("TRANSCODE"));
    let empty = svc("empty", &["10.0.0.6"], 1887, Some(""));
    let udoo = svc(
        "transcode-orchestrator on udoo",
        &["fe80::1", "2001:db8::2", "10.0.0.2"],
        1884,
        Some("transcode"),
    );
    let attic = svc("attic", &["10.0.0.7"], 1999, Some("transcode"));
    let no_port = svc("broken", &["10.0.0.4"], 0, Some("transcode"));
    let odd = svc(
        "odd",
        &[
            "0.0.0.0",
            "224.0.0.251",
            "255.255.255.255",
            "::",
            "ff02::fb",
            "10.0.0.8",
        ],
        1888,
        Some("transcode"),
    );
    let twin = svc("twin", &["10.0.0.7"], 1999, Some("transcode"));
    // (services, held, candidates in order)
    type Case<'a> = (Vec<Service>, Vec<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (vec![], vec![], vec![]),
        // Foreign brokers are never candidates, whatever else is there.
        (vec![house.clone()], vec![], vec![]),
        (
            vec![house.clone(), zigbee.clone(), shouting, empty],
            vec![],
            vec![],
        ),
        (
            vec![house.clone(), udoo.clone(), zigbee.clone()],
            vec![],
            vec!["10.0.0.2:1884", "[2001:db8::2]:1884"],
        ),
        // By instance name, IPv4 first within one; no port 0.
        (
            vec![udoo.clone(), attic.clone(), no_port],
            vec![],
            vec!["10.0.0.7:1999", "10.0.0.2:1884", "[2001:db8::2]:1884"],
        ),
        // Unreachable kinds of address are left out.
        (vec![odd], vec![], vec!["10.0.0.8:1888"]),
        // A held address goes, the instance's others stay.
        (
            vec![udoo.clone(), attic.clone()],
            vec!["10.0.0.7:1999", "10.0.0.2:1884"],
            vec!["[2001:db8::2]:1884"],
        ),
        // One address advertised twice is tried once.
        (vec![twin, attic], vec![], vec!["10.0.0.7:1999"]),
    ];
    for (i, (services, held, want)) in cases.into_iter().enumerate() {
        let held = addrs(&held);
        let got: Vec<String> = candidates(&services, "transcode", |a| held.contains(&a))
            .iter()
            .map(|c| c.addr.to_string())
            .collect();
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn txt_prefixes_and_printable_names() {
    let long = vec![b'a'; MAX_PREFIX_LEN + 1];
    // (the TXT value as mdns-sd gives it, the prefix read)
    type Case<'a> = (Option<Option<&'a [u8]>>, Option<&'a str>);
    let cases: &[Case] = &[
        (None, None),
        (Some(None), None),
        (Some(Some(b"")), None),
        (Some(Some(b"transcode")), Some("transcode")),
        (Some(Some(b"\xff\xfe")), None),
        (Some(Some(&long)), None),
    ];
    for (raw, want) in cases {
        assert_eq!(txt_prefix(*raw).as_deref(), *want, "{raw:?}");
    }
    assert_eq!(printable("evil\nWARN forged"), "evil?WARN forged");
    assert_eq!(printable(&"x".repeat(300)).chars().count(), 101);
}

#[test]
fn the_choice_keeps_a_live_broker_and_moves_only_for_a_reason() {
    let (a, b, c) = ("10.0.0.1:1883", "10.0.0.2:1883", "10.0.0.3:1883");
    // (current, connected, candidates, answering, chosen)
    type Case<'a> = (
        Option<&'a str>,
        bool,
        Vec<&'a str>,
        Vec<&'a str>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        // Nothing yet.
        (None, false, vec![], vec![], None),
        (None, false, vec![a, b], vec![], None),
        (None, false, vec![a, b], vec![b], Some(b)),
        (None, false, vec![a, b], vec![a, b], Some(a)),
        // Two live brokers of ours: the current one stays.
        (Some(b), true, vec![a, b], vec![a], Some(b)),
        (Some(b), false, vec![a, b], vec![a, b], Some(b)),
        // The current one stopped answering, another answers.
        (Some(b), false, vec![a, b], vec![a], Some(a)),
        // Its advertisement went (or moved), even with the connection up.
        (Some(c), true, vec![a, b], vec![b], Some(b)),
        (Some(c), false, vec![a, b], vec![a, b, c], Some(a)),
        // It refused us (no longer a candidate).
        (Some(a), false, vec![b], vec![a, b], Some(b)),
        // Nothing better answers: keep trying the current one.
        (Some(c), true, vec![a, b], vec![], Some(c)),
        (Some(a), false, vec![b], vec![], Some(a)),
        (Some(a), false, vec![], vec![], Some(a)),
    ];
    for (i, (current, connected, list, answering, want)) in cases.into_iter().enumerate() {
        let current = current.map(|s| s.parse().unwrap());
        let list = addrs(&list);
        let answering: HashSet<SocketAddr> = addrs(&answering).into_iter().collect();
        let want = want.map(|s| s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            choose(current, connected, &list, &answering),
            want,
            "case {i}"
        );
    }
}

#[test]
fn a_live_current_broker_is_not_probed() {
    let list = addrs(&["10.0.0.1:1883", "10.0.0.2:1883"]);
    let (a, c) = (list[0], "10.0.0.3:1883".parse().unwrap());
    let cases = [
        (Some(a), true, vec![]),
        (Some(a), false, list.clone()),
        (Some(c), true, list.clone()),
        (None, true, list.clone()),
        (None, false, list.clone()),
    ];
    for (current, connected, want) in cases {
        assert_eq!(
            to_probe(current, connected, &list),
            want,
            "{current:?} {connected}"
        );
    }
}

#[test]
fn refusals_hold_a_broker_back_for_a_while() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let a: SocketAddr = "10.0.0.1:1883".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:1883".parse().unwrap();
    let mut r = Refusals::default();
    assert!(!r.holds(a, t0));
    assert!(r.refuse(a, t0), "a first refusal is news");
    assert!(r.holds(a, t0 + s(59)) && !r.holds(b, t0 + s(1)));
    assert!(!r.refuse(a, t0 + s(10)), "again while held: no news");
    assert!(r.holds(a, t0 + s(65)), "a new refusal holds it longer");
    assert!(!r.holds(a, t0 + s(70)));
    assert!(r.refuse(a, t0 + s(71)), "after the hold it is news again");
    assert!(r.refuse(b, t0 + s(200)));
    assert_eq!(r.until.len(), 1, "ended holds are pruned");
    r.forget(b);
    assert!(
        !r.holds(b, t0 + s(201)),
        "a broker that accepted us is free"
    );
}

fn finder() -> Finder {
    Finder {
        worker_id: "w1".into(),
        prefix: "transcode".into(),
        ours: HashMap::new(),
        foreign_noted: HashSet::new(),
        refusals: Refusals::default(),
        current: None,
        connected: false,
    }
}

#[test]
fn the_finder_keeps_only_records_of_ours() {
    let mut f = finder();
    f.on_resolved(svc("a", &["127.0.0.1"], 2000, Some("transcode")));
    assert_eq!(f.ours.len(), 1);
    // The same instance now says another prefix: it is no longer ours.
    f.on_resolved(svc("a", &["127.0.0.1"], 2000, Some("other")));
    assert!(f.ours.is_empty());
    for i in 0..(MAX_OURS + 10) {
        f.on_resolved(svc(
            &format!("flood {i}"),
            &["10.1.1.1"],
            1,
            Some("transcode"),
        ));
        f.on_resolved(svc(&format!("noise {i}"), &["10.1.1.2"], 1, None));
    }
    assert_eq!(f.ours.len(), MAX_OURS);
    f.on_removed("flood 0");
    assert_eq!(f.ours.len(), MAX_OURS - 1);
    // A connected broker is settled while it is advertised.
    f.current = Some("10.1.1.1:1".parse().unwrap());
    f.connected = true;
    assert!(!f.unsettled());
    f.connected = false;
    assert!(f.unsettled());
    f.connected = true;
    f.current = Some("127.0.0.1:2000".parse().unwrap());
    assert!(f.unsettled(), "no longer advertised");
}

#[tokio::test]
async fn a_refusing_broker_is_left_for_one_that_answers() {
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (p1, p2) = (
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    );
    let mut f = finder();
    f.on_resolved(svc("1 first", &["127.0.0.1"], p1, Some("transcode")));
    f.on_resolved(svc("2 second", &["127.0.0.1"], p2, Some("transcode")));
    f.on_resolved(svc("0 foreign", &["127.0.0.1"], p2, None));
    let chosen = f.decide().await.expect("a broker");
    assert_eq!(
        (chosen.addr.port(), chosen.instance.as_str()),
        (p1, "1 first")
    );
    assert!(f.decide().await.is_none(), "no change without a reason");
    let refused = BrokerAddr {
        host: "127.0.0.1".into(),
        port: p1,
        tls: false,
    };
    f.on_refused(&refused, Instant::now());
    let chosen = f.decide().await.expect("the other broker");
    assert_eq!(chosen.addr.port(), p2);
    // The first one accepted us after all (its login was fixed): it is a
    // candidate again.
    let first_addr = SocketAddr::new([127, 0, 0, 1].into(), p1);
    f.current = Some(first_addr);
    f.connected = true;
    f.on_connected();
    assert!(!f.refusals.holds(first_addr, Instant::now()));
    assert!(f.decide().await.is_none(), "the live current broker stays");
}
