//! What the core tells dashboards: Home Assistant's discovery configs
//! ([`Announcer`]) and the retained counters ([`Board`]). Both are
//! consumers: the core feeds them facts (a worker seen, a worker forgotten,
//! the counts of the moment) and publishes what they answer; neither reads
//! or changes the core's state.

use super::*;

/// Home Assistant's device configs: one per worker the first time it is
/// online, its removal when it is forgotten, all of them again when Home
/// Assistant (or our connection) starts over.
pub(super) struct Announcer {
    discovery: Discovery,
    /// Workers whose config was published.
    announced: HashSet<String>,
}

impl Announcer {
    pub(super) fn new(discovery: Discovery) -> Announcer {
        Announcer {
            discovery,
            announced: HashSet::new(),
        }
    }

    /// Every config: the orchestrator's and each known worker's.
    fn all(&mut self, workers: Vec<(String, Option<Heartbeat>)>) -> Vec<Publish> {
        let mut out = vec![retained(self.discovery.orchestrator_config())];
        for (id, hb) in workers {
            out.push(retained(self.discovery.worker_config(&id, hb.as_ref())));
            self.announced.insert(id);
        }
        out
    }

    /// A worker as the registry knows it now: its config the first time it
    /// is online, its removal once it is not known any more.
    fn seen(&mut self, worker_id: &str, online: Option<Option<&Heartbeat>>) -> Option<Publish> {
        match online {
            Some(hb) if !self.announced.contains(worker_id) => {
                self.announced.insert(worker_id.to_string());
                Some(retained(self.discovery.worker_config(worker_id, hb)))
            }
            None if self.announced.remove(worker_id) => {
                Some(retained(self.discovery.remove_worker(worker_id)))
            }
            _ => None,
        }
    }

    /// A worker forgotten: its device goes (also one announced before a
    /// restart of ours, whose config the broker still holds).
    pub(super) fn forgotten(&mut self, worker_id: &str) -> Publish {
        self.announced.remove(worker_id);
        retained(self.discovery.remove_worker(worker_id))
    }

    /// What was published was not (the store refused the event): say it all
    /// again later.
    pub(super) fn unsent(&mut self) {
        self.announced.clear();
    }
}

/// The retained counters on the stats topic, published when they change.
#[derive(Default)]
pub(super) struct Board {
    /// The counters last published.
    last: Option<wire::OrchestratorStats>,
}

impl Board {
    fn offer(
        &mut self,
        stats: wire::OrchestratorStats,
        always: bool,
        topic: String,
    ) -> Option<Publish> {
        if !always && self.last == Some(stats) {
            return None;
        }
        self.last = Some(stats);
        Some(Publish {
            topic,
            payload: wire::encode(&stats),
            retain: true,
        })
    }

    /// What was published was not: publish at the next chance.
    pub(super) fn unsent(&mut self) {
        self.last = None;
    }
}

fn retained((topic, payload): (String, Vec<u8>)) -> Publish {
    Publish {
        topic,
        payload,
        retain: true,
    }
}

impl Core {
    /// The topic Home Assistant announces its start on, when enabled.
    pub fn ha_status_topic(&self) -> Option<String> {
        self.ha.as_ref().map(|a| a.discovery.ha_status_topic())
    }

    /// Home Assistant (re)started: it wants every config and state again.
    pub fn on_ha_status(&mut self, payload: &[u8]) -> Vec<Publish> {
        if payload != crate::homeassistant::HA_ONLINE.as_bytes() {
            return Vec::new();
        }
        tracing::info!("Home Assistant is online; publishing discovery again");
        let mut out = self.announce_all();
        out.extend(self.stats(true));
        out
    }

    /// The orchestrator's config and every known worker's.
    pub(super) fn announce_all(&mut self) -> Vec<Publish> {
        let Some(ha) = &mut self.ha else {
            return Vec::new();
        };
        let workers = self
            .registry
            .snapshot()
            .into_iter()
            .map(|w| (w.worker_id, w.heartbeat))
            .collect();
        ha.all(workers)
    }

    /// What Home Assistant should hear about a worker the registry just
    /// heard of.
    pub(super) fn announce(&mut self, worker_id: &str) -> Vec<Publish> {
        let Some(ha) = &mut self.ha else {
            return Vec::new();
        };
        let online = self
            .registry
            .is_online(worker_id)
            .map(|_| self.registry.heartbeat(worker_id));
        ha.seen(worker_id, online).into_iter().collect()
    }

    /// The retained counters, when they changed (or always).
    pub(super) fn stats(&mut self, always: bool) -> Option<Publish> {
        let count = |f: &dyn Fn(&Job) -> bool| self.jobs.values().filter(|j| f(j)).count();
        let stats = wire::OrchestratorStats {
            queued_jobs: count(&|j| j.state == JobState::Queued),
            running_jobs: count(&|j| j.is_running()),
            workers_online: self.registry.online_count(),
        };
        let topic = self.topics.orchestrator_stats();
        self.board.offer(stats, always, topic)
    }
}
