//! One run of FFmpeg for an assignment, from spawn to its end: the source
//! and its rate check, the arguments, progress and statuses, the segments
//! as they appear, a cancel or a fence, and the final report.

use super::*;

impl Jobs {
    /// Runs one job to its end and reports it.
    pub(super) async fn run(&self, a: JobAssignment, stop: oneshot::Receiver<StopReason>) {
        let job_id = a.job_id;
        let started = Instant::now();
        let mut stop = stop;
        // A run that found its source's rate uneven starts over once, on
        // the facts it found.
        let outcome = match self.encode(&a, &mut stop, None).await {
            Outcome::StartOver(info) => self.encode(&a, &mut stop, Some(*info)).await,
            outcome => outcome,
        };
        self.state().fps.remove(&job_id);
        let worker_id = self.worker_id();
        let mut s = JobStatus::new(job_id, JobState::Failed);
        match outcome {
            Outcome::Completed {
                stream_url,
                segments_done,
            } => {
                s.state = JobState::Completed;
                s.progress = 100.0;
                s.stream_url = stream_url;
                s.segments_done = Some(segments_done);
                s.served_segment = self.inner.outputs.served_max(job_id);
                tracing::info!(took_s = started.elapsed().as_secs_f64(), "job completed");
            }
            Outcome::Stopped(StopReason::Cancelled, last) => {
                s = *last;
                s.state = JobState::Cancelled;
                s.speed = None;
                s.eta_s = None;
                tracing::info!("job cancelled");
            }
            Outcome::Stopped(StopReason::Shutdown, last) => {
                s = *last;
                s.state = JobState::Failed;
                s.error = Some(format!(
                    "worker {worker_id} was stopped during the run and handed it back"
                ));
                s.error_kind = Some(ErrorKind::Shutdown);
            }
            Outcome::Stopped(StopReason::Superseded, _) => {
                // The newer attempt reports for this job.
                self.finish(job_id, a.attempt);
                return;
            }
            Outcome::StartOver(_) => {
                s.error = Some(format!(
                    "worker {worker_id} found the source's frame rate uneven twice and gave up on {:?}",
                    a.source_path
                ));
                s.error_kind = Some(ErrorKind::Input);
                tracing::warn!("the source's frame rate could not be settled");
            }
            Outcome::Failed(kind, reason) => {
                s.error = Some(reason.clone());
                s.error_kind = Some(kind);
                tracing::warn!(kind = ?kind, "job failed: {reason}");
            }
        }
        self.count(s.state.as_str());
        self.publish(s, Some(a.attempt), a.is_mesh_mode, true).await;
        self.finish(job_id, a.attempt);
    }

    /// Forgets a finished run and schedules its output's deletion.
    fn finish(&self, job_id: Uuid, attempt: u32) {
        {
            let mut state = self.state();
            if state
                .running
                .get(&job_id)
                .is_some_and(|r| r.attempt == attempt)
            {
                state.running.remove(&job_id);
            }
        }
        let still_running = self.state().running.contains_key(&job_id);
        if self.state().running.is_empty() {
            self.publish_idle();
        }
        if !still_running {
            self.inner
                .activity
                .send_modify(|a| a.active_jobs.retain(|j| *j != job_id));
            // From now on the output is kept while players use it.
            self.inner.outputs.set_running(job_id, false);
        }
    }

    fn stream_url(&self, job_id: Uuid) -> String {
        format!("{}{job_id}/{PLAYLIST}", self.inner.settings.stream_base)
    }

    /// One run of a job: the source located and probed (unless `known`
    /// says what it is), FFmpeg started and watched to its end.
    async fn encode(
        &self,
        a: &JobAssignment,
        stop: &mut oneshot::Receiver<StopReason>,
        known: Option<SourceInfo>,
    ) -> Outcome {
        let settings = &self.inner.settings;
        let worker_id = &settings.worker_id;
        let job_id = a.job_id;
        let mut status = JobStatus::new(job_id, JobState::Processing);
        self.publish(status.clone(), Some(a.attempt), a.is_mesh_mode, true)
            .await;

        let source = match media::locate(settings.media_root.clone(), a, worker_id).await {
            Ok((source, passed_over)) => {
                if let Some(why) = passed_over {
                    tracing::info!(source = %source.shown(), "reading the source from the orchestrator: {why}");
                }
                source
            }
            Err((kind, e)) => return Outcome::Failed(kind, e),
        };
        // The orchestrator's copy: answering at all, and with the file.
        let head = match &source {
            Source::Remote { url } => {
                match media::fetch_head(url, &job_id.to_string(), worker_id).await {
                    Ok(head) => Some(head),
                    Err((kind, e)) => return Outcome::Failed(kind, e),
                }
            }
            Source::Local(_) => None,
        };
        let input = source.input();
        let probed = match known {
            Some(info) => Ok((info, None)),
            None => self.source_info(a, &source, head.as_ref()).await,
        };
        let (info, mut rate_check) = match probed {
            Ok(probed) => probed,
            Err(e) => {
                // Over the network, a failed probe is the file's fault only
                // if the orchestrator still answers.
                if let Source::Remote { url } = &source {
                    if let Err((kind, gone)) =
                        media::fetch_head(url, &job_id.to_string(), worker_id).await
                    {
                        return Outcome::Failed(kind, format!("{gone} (probing it failed: {e})"));
                    }
                }
                return Outcome::Failed(
                    ErrorKind::Input,
                    format!("worker {worker_id}: source {:?}: {e}", a.source_path),
                );
            }
        };
        let Some((encoder, family)) =
            command::choose_encoder(&settings.encoders, a.encoder.as_deref())
        else {
            return Outcome::Failed(
                ErrorKind::Worker,
                match &a.encoder {
                    Some(e) => format!(
                        "worker {worker_id} cannot encode this part of job {job_id} with {e}, which the job's other parts use: its FFmpeg probe passed only {:?}",
                        settings.encoders
                    ),
                    None => format!(
                        "worker {worker_id} has no working H.264 encoder (the FFmpeg probe found none)"
                    ),
                },
            );
        };

        // The job's grid: the one its first run decided, or ours when this
        // is the first run.
        let grid = a.grid.unwrap_or_else(|| {
            RunWindow::grid_for(
                info.rate,
                settings.segment_seconds,
                family == Family::Software,
            )
        });
        let first_segment = a.segment_offset.unwrap_or(0);
        let window = RunWindow {
            grid,
            first_segment,
            // A sender that names a length instead gets whole segments.
            segment_count: a.segment_count.or_else(|| {
                a.duration
                    .and_then(|d| RunWindow::segments_for(d, grid, first_segment))
            }),
            job_first_frame: RunWindow::first_frame(a.start_time, info.video_start, grid.fps()),
            video_start: info.video_start,
            variable_rate: info.variable_rate,
            sample_rate: info.sample_rate.unwrap_or(48_000),
        };
        let remaining = info
            .duration
            .map(|d| d - a.start_time - window.offset_seconds());
        if let Err(e) = grid.validate() {
            return Outcome::Failed(
                ErrorKind::Input,
                format!(
                    "worker {worker_id}: source {:?} cannot be cut into segments: {e}",
                    a.source_path
                ),
            );
        }
        if remaining.is_some_and(|r| r <= 0.0)
            && window.first_segment > 0
            // A part of a split job is cut from an estimate of the length.
            && (a.segment_count.is_none() || a.is_mesh_mode)
        {
            // The job ends right before this segment (an earlier run's
            // end was never heard of): nothing to write, and now it is known.
            tracing::info!(
                segment = window.first_segment,
                "the source ends before this segment"
            );
            return Outcome::Completed {
                stream_url: None,
                segments_done: window.first_segment,
            };
        }
        if remaining.is_some_and(|r| r <= 0.0) {
            return Outcome::Failed(
                ErrorKind::Input,
                format!(
                    "worker {worker_id}: segment {} of {:?} from {} s starts past its end ({:.1} s long)",
                    window.first_segment,
                    a.source_path,
                    a.start_time,
                    info.duration.unwrap_or_default()
                ),
            );
        }
        // This run's length, and where it sits in the whole job.
        let run_length = match (window.duration(), remaining) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (Some(d), None) => Some(d),
            (None, r) => r,
        };
        let before = window.offset_seconds();
        let total = info.duration.map(|d| d - a.start_time).filter(|t| *t > 0.0);
        let out_dir = self.inner.outputs.folder(job_id);
        if let Err(e) = tokio::fs::create_dir_all(&out_dir).await {
            return Outcome::Failed(
                ErrorKind::Worker,
                format!("worker {worker_id} cannot create the output folder {}: {e} (check transcode.output_dir)", out_dir.display()),
            );
        }
        let spec = EncodeSpec {
            input: &input,
            out_dir: &out_dir,
            window,
            size: command::output_size((info.width, info.height), a.resolution.bounding_box()),
            bitrate: a.bitrate,
            encoder,
            family,
            has_audio: info.has_audio,
            threads: settings.threads,
        };
        let encoding = command::encoding_label(&spec);
        // Segments an earlier run wrote here stay when they join ours;
        // otherwise the folder starts over.
        let mut held = match self.inner.outputs.held(job_id).await {
            Some(h) if h.grid == grid && h.encoding == encoding => Held {
                attempt: a.attempt,
                ..h
            },
            old => {
                if let Some(mut old) = old.filter(|h| !h.segments.is_empty()) {
                    // The orchestrator must not send players here for them.
                    tracing::info!(
                        encoding,
                        "this run is encoded otherwise; the folder's earlier segments go"
                    );
                    old.segments.clear();
                    self.send_inventory(job_id, &old).await;
                }
                let _ = tokio::fs::remove_dir_all(&out_dir).await;
                let _ = tokio::fs::create_dir_all(&out_dir).await;
                Held {
                    attempt: a.attempt,
                    grid,
                    encoding: encoding.clone(),
                    segments: Vec::new(),
                }
            }
        };
        // FFmpeg's playlist of an earlier run must not be read as ours.
        let _ = tokio::fs::remove_file(out_dir.join(PLAYLIST)).await;
        let start_number = window.first_segment;
        // A stop that came while we probed ends the run before FFmpeg starts.
        if let Ok(reason) = stop.try_recv() {
            return Outcome::Stopped(reason, Box::new(status));
        }
        let args = command::ffmpeg_args(&spec);
        tracing::info!(encoder, size = ?spec.size, source = %a.source_path, "starting FFmpeg");
        tracing::debug!(?args, "FFmpeg command");
        let mut child = match spawn_ffmpeg(&settings.ffmpeg, &args) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Failed(
                    ErrorKind::Worker,
                    format!("worker {worker_id} cannot start FFmpeg ({}): {e}; install FFmpeg or set transcode.ffmpeg", settings.ffmpeg),
                )
            }
        };

        // Held here, not in `child`: tokio's `Child::wait` closes the stdin it
        // holds, and stdin carries the `q` that stops FFmpeg cleanly.
        let mut stdin = child.stdin.take();
        let (progress_tx, mut progress_rx) = mpsc::channel(64);
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stdout);
                let mut parser = ProgressParser::default();
                let mut line = Vec::new();
                while read_line(&mut reader, &mut line).await {
                    if let Some(p) = parser.feed(&String::from_utf8_lossy(&line)) {
                        // Never block FFmpeg's pipe: a full channel drops a block.
                        let _ = progress_tx.try_send(p);
                    }
                }
            });
        }
        let stderr_task = child.stderr.take().map(|stderr| {
            tokio::spawn(async move {
                let mut tail: VecDeque<String> = VecDeque::new();
                let mut reader = BufReader::new(stderr);
                let mut raw = Vec::new();
                while read_line(&mut reader, &mut raw).await {
                    let line = String::from_utf8_lossy(&raw).into_owned();
                    if line.contains("Will reconnect at") {
                        // An HTTP source dropped; FFmpeg opens it again.
                        tracing::warn!(ffmpeg = %line, "the source's connection dropped; reconnecting");
                    } else {
                        tracing::debug!(ffmpeg = %line);
                    }
                    tail.push_back(line);
                    if tail.len() > STDERR_TAIL {
                        tail.pop_front();
                    }
                }
                tail.into_iter().collect::<Vec<String>>()
            })
        });

        let playlist = out_dir.join(PLAYLIST);
        let mut reporter = SegmentReporter {
            next: start_number,
            end: window.segment_count.map(|c| start_number + c),
            // Whole segments only: a container's length runs a little past
            // the last frame (its audio), and an estimate one short costs
            // nothing (the last chunk runs to the real end) where one too
            // many costs a chunk that finds nothing.
            job_segments: total.map(|t| {
                let frames = (t * grid.fps()).floor().max(0.0) as u64;
                grid.segment_of_frame(frames).clamp(1, wire::MAX_SEGMENTS)
            }),
            grid,
            stopped: false,
        };
        // FFmpeg's playlist is read often until the first segment, which
        // a player waits for, then at the pace of segments.
        let mut first_watch = true;
        let mut watch = tokio::time::interval(FIRST_SEGMENT_POLL);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut start_over: Option<SourceInfo> = None;
        let mut stopped: Option<StopReason> = None;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut last_publish: Option<Instant> = None;
        let exit = loop {
            let kill_timer = async {
                match kill_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = child.wait() => break exit,
                reason = &mut *stop, if stopped.is_none() => {
                    let reason = reason.unwrap_or(StopReason::Shutdown);
                    stopped = Some(reason);
                    if let Some(mut pipe) = stdin.take() {
                        let _ = pipe.write_all(b"q\n").await;
                        let _ = pipe.flush().await;
                    }
                    kill_at = Some(tokio::time::Instant::now() + CANCEL_GRACE);
                }
                _ = kill_timer => {
                    tracing::warn!("FFmpeg did not stop after `q`; killing it");
                    let _ = child.start_kill();
                    kill_at = None;
                }
                stamps = async {
                    match rate_check.as_mut() {
                        Some(check) => (&mut check.task).await.unwrap_or_default(),
                        None => std::future::pending().await,
                    }
                }, if rate_check.is_some() && start_over.is_none() => {
                    if let Some(check) = rate_check.take() {
                        if let Rate::Varies(found) = self.judge_rate(a, check, &stamps, &info) {
                            // Nothing was reported: FFmpeg goes, and the
                            // run starts over on the constant rate.
                            start_over = Some(found);
                            let _ = child.start_kill();
                        } else if stopped.is_none() {
                            self.report_new_segments(a, &playlist, &mut held, &mut reporter).await;
                        }
                    }
                }
                _ = watch.tick(), if stopped.is_none() && rate_check.is_none() && start_over.is_none() => {
                    // New segments reach the orchestrator at once, not with
                    // the next progress tick.
                    self.report_new_segments(a, &playlist, &mut held, &mut reporter).await;
                    if reporter.next > start_number && status.stream_url.is_none() {
                        status.stream_url = Some(self.stream_url(job_id));
                        tracing::info!(stream_url = %self.stream_url(job_id), "first segment ready");
                    }
                    if first_watch && reporter.next > start_number {
                        first_watch = false;
                        watch = tokio::time::interval(SEGMENT_POLL);
                        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                Some(p) = progress_rx.recv() => {
                    let out_time = p.out_time_s.unwrap_or(0.0);
                    // A part of a split job reports its own share; the
                    // orchestrator sums up the job.
                    status.progress = if a.is_mesh_mode {
                        progress::percent(out_time, run_length)
                    } else {
                        progress::percent(before + out_time, total)
                    };
                    status.fps = p.fps.unwrap_or(0.0);
                    self.state().fps.insert(job_id, status.fps);
                    status.speed = p.speed;
                    status.eta_s = progress::eta(out_time, run_length, p.speed);
                    if reporter.next > start_number {
                        status.segments_done = Some(reporter.next);
                        status.resume_time = Some(
                            a.start_time + grid.start_of(reporter.next),
                        );
                    }
                    status.served_segment = self.inner.outputs.served_max(job_id);
                    let due = last_publish.is_none_or(|t| t.elapsed() >= STATUS_EVERY);
                    if due && stopped.is_none() {
                        last_publish = Some(Instant::now());
                        self.publish(status.clone(), Some(a.attempt), a.is_mesh_mode, false).await;
                    }
                }
            }
        };
        let tail = match stderr_task {
            Some(t) => t.await.unwrap_or_default(),
            None => Vec::new(),
        };
        // FFmpeg ended before the rate check did: its word decides whether
        // the segments stand.
        if let Some(check) = rate_check.take() {
            if let Rate::Varies(found) = self.finish_rate_check(a, check, &info).await {
                start_over = Some(found);
            }
        }
        if let Some(found) = start_over {
            return match stopped {
                Some(reason) => Outcome::Stopped(reason, Box::new(status)),
                None => Outcome::StartOver(Box::new(found)),
            };
        }
        // Whatever FFmpeg finished before it stopped is ours to report; the
        // segment a stop cut short is not.
        reporter.stopped = stopped.is_some();
        self.report_new_segments(a, &playlist, &mut held, &mut reporter)
            .await;
        if let Some(reason) = stopped {
            return Outcome::Stopped(reason, Box::new(status));
        }
        match exit {
            Ok(code) if code.success() => Outcome::Completed {
                stream_url: (reporter.next > start_number).then(|| self.stream_url(job_id)),
                segments_done: reporter.next,
            },
            Ok(code) => Outcome::Failed(
                ErrorKind::Worker,
                format!(
                    "worker {worker_id}: FFmpeg failed ({code}) on {:?}: {}",
                    a.source_path,
                    progress::failure_reason(&tail)
                ),
            ),
            Err(e) => Outcome::Failed(
                ErrorKind::Worker,
                format!("worker {worker_id} lost track of FFmpeg: {e}"),
            ),
        }
    }
}

enum Outcome {
    /// The source's facts changed under the run (its frame rate varies):
    /// run again from the start with these.
    StartOver(Box<SourceInfo>),
    Completed {
        stream_url: Option<String>,
        /// The next segment number: every one before it from this run's
        /// first exists.
        segments_done: u64,
    },
    Stopped(StopReason, Box<JobStatus>),
    Failed(ErrorKind, String),
}

/// Reads one line as bytes (FFmpeg may print any bytes: file names, tags);
/// false at the end of the stream. Never stops early on odd bytes, so the
/// pipe stays drained and FFmpeg never dies of SIGPIPE.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, line: &mut Vec<u8>) -> bool {
    line.clear();
    match reader.read_until(b'\n', line).await {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            true
        }
    }
}

fn spawn_ffmpeg(ffmpeg: &str, args: &[String]) -> std::io::Result<Child> {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and _exit are async-signal-safe. FFmpeg must
        // not outlive a worker that was killed, or one job could run twice;
        // if the worker died before prctl took effect, give up at once.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}
