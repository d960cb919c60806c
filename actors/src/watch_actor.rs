//! The WatchActor: one per active watch, a child of the WatchSupervisor. Events are routed to
//! it as messages; it decides whether they concern its watch, records the run (exactly once
//! per event key) together with the session to start, and nudges the session queue to start
//! it. A schedule watch fires from its own timer: one pending timer at a time, replaced (the
//! old one cancelled) whenever the watch is edited.

use crate::actor::{Behaviour, Handled, Started};
use crate::context::Context;
use crate::domain::schedule::{self, Schedule};
use crate::domain::watch::{Mismatch, OWN_BRANCH_PREFIX};
use crate::domain::{prompt, NewSession, SessionId, Triggered, Watch, WatchEvent, WatchKind};
use crate::error::Result;
use crate::queue::QueueMsg;
use crate::requests;
use crate::store::watches::{NewRun, Recorded};
use crate::timer::Timer;
use crate::workspace;
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages of a watch actor.
pub enum WatchMsg {
    /// An incoming event; the reply says whether a session was started for this watch.
    Event {
        event: Arc<WatchEvent>,
        reply: RpcReplyPort<Verdict>,
    },
    /// The watch was edited.
    Update(Box<Watch>),
    /// Timer: a schedule slot may be due.
    Tick,
    /// A snapshot for the admin view.
    Inspect(RpcReplyPort<WatchSnapshot>),
    /// Fail on purpose (tests and fault drills).
    InjectFailure(String),
}

/// A watch's answer to an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A session was started (and its run recorded).
    Started(Triggered),
    /// The event concerned this watch but started nothing: filter, event state, duplicate,
    /// loop guard, hourly limit. The text says which, for `trigger-*` to tell the user.
    Skipped(String),
    /// Another kind of watch or another repository.
    NotConcerned,
}

/// What a watch actor says about itself.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchSnapshot {
    pub watch_id: String,
    pub kind: String,
    pub events_handled: u64,
    pub messages_handled: u64,
    /// RFC 3339 time of the next schedule slot, `""` for event watches.
    pub next_fire: String,
}

pub struct WatchArgs {
    pub watch: Watch,
    pub ctx: Arc<Context>,
}

pub struct WatchState {
    watch: Watch,
    ctx: Arc<Context>,
    handled: u64,
    messages: u64,
    schedule: Option<Schedule>,
    next_fire: Option<jiff::Timestamp>,
    timer: Timer,
}

pub type WatchActor = crate::actor::Run<WatchState>;

impl WatchState {
    /// Arms the timer for the next schedule slot after `from` (schedules only; an edit that
    /// made the watch something else cancels a pending slot).
    fn arm(&mut self, myself: &ActorRef<WatchMsg>, from: jiff::Timestamp) {
        let Some(schedule) = &self.schedule else {
            self.next_fire = None;
            self.timer.cancel();
            return;
        };
        let now = jiff::Timestamp::now();
        self.next_fire = schedule.next_after(from.max(now));
        match self.next_fire {
            Some(next) => {
                let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
                let me = myself.clone();
                self.timer.arm(wait, move || {
                    let _ = me.cast(WatchMsg::Tick);
                });
            }
            None => self.timer.cancel(),
        }
    }

    fn load_schedule(&mut self) -> Result<(), ActorProcessingErr> {
        self.schedule = match self.watch.kind {
            WatchKind::Schedule => {
                Some(Schedule::parse(&self.watch.schedule, &self.watch.timezone)?)
            }
            _ => None,
        };
        Ok(())
    }
}

impl Behaviour for WatchState {
    type Msg = WatchMsg;
    type Args = WatchArgs;

    async fn start(_myself: ActorRef<WatchMsg>, args: WatchArgs) -> Started<Self> {
        let mut state = WatchState {
            watch: args.watch,
            ctx: args.ctx,
            handled: 0,
            messages: 0,
            schedule: None,
            next_fire: None,
            timer: Timer::default(),
        };
        state.load_schedule()?;
        Ok(state)
    }

    async fn started(&mut self, myself: ActorRef<WatchMsg>) -> Handled {
        if let Some(schedule) = self.schedule.clone() {
            // A slot missed while the daemon was down runs once now, not once per slot.
            let last = self.ctx.store.last_event_key(&self.watch.id).await?;
            let since = last
                .as_deref()
                .or(Some(self.watch.created_at.as_str()))
                .and_then(schedule::parse_instant)
                .unwrap_or_else(jiff::Timestamp::now);
            if let Some(slot) = schedule.due(since, jiff::Timestamp::now()) {
                fire_slot(self, slot);
            }
            self.arm(&myself, jiff::Timestamp::now());
        }
        Ok(())
    }

    async fn handle(&mut self, myself: ActorRef<WatchMsg>, message: WatchMsg) -> Handled {
        self.messages += 1;
        match message {
            WatchMsg::Event { event, reply } => {
                self.handled += 1;
                match self.watch.mismatch(&event) {
                    None => {}
                    Some(Mismatch::NotConcerned) => {
                        let _ = reply.send(Verdict::NotConcerned);
                        return Ok(());
                    }
                    Some(Mismatch::Filtered(reason) | Mismatch::Ignored(reason)) => {
                        let _ = reply.send(Verdict::Skipped(reason));
                        return Ok(());
                    }
                }
                let job = Job::new(self);
                self.ctx.spawn(async move {
                    let _ = reply.send(job.fire(&event).await);
                });
            }
            WatchMsg::Update(watch) => {
                self.watch = *watch;
                self.load_schedule()?;
                self.arm(&myself, jiff::Timestamp::now());
            }
            WatchMsg::Tick => {
                let now = jiff::Timestamp::now();
                let mut fired = now;
                // Timers may fire a hair early or late; act on the slot that is due.
                if let (Some(schedule), Some(next)) = (&self.schedule, self.next_fire) {
                    if next <= now + jiff::SignedDuration::from_millis(50) {
                        let before = next - jiff::SignedDuration::from_millis(1);
                        let slot = schedule.due(before, now).unwrap_or(next);
                        fire_slot(self, slot);
                        // Watches stored before the spacing rule existed keep to it too.
                        let spacing = self.ctx.settings.schedule_min_interval;
                        fired = slot + jiff::SignedDuration::try_from(spacing).unwrap_or_default()
                            - jiff::SignedDuration::from_millis(1);
                    }
                }
                self.arm(&myself, fired);
            }
            WatchMsg::Inspect(reply) => {
                let _ = reply.send(WatchSnapshot {
                    watch_id: self.watch.id.clone(),
                    kind: self.watch.kind.as_str().to_owned(),
                    events_handled: self.handled,
                    messages_handled: self.messages,
                    next_fire: self.next_fire.map(schedule::slot_key).unwrap_or_default(),
                });
            }
            WatchMsg::InjectFailure(reason) => {
                return Err(format!("injected watch failure: {reason}").into());
            }
        }
        Ok(())
    }
}

fn fire_slot(state: &mut WatchState, slot: jiff::Timestamp) {
    state.handled += 1;
    let job = Job::new(state);
    let event = WatchEvent::Tick {
        slot: schedule::slot_key(slot),
    };
    state.ctx.spawn(async move {
        job.fire(&event).await;
    });
}

/// The slow part of handling an event (diff context, store write), off the actor's mailbox.
struct Job {
    watch: Watch,
    ctx: Arc<Context>,
}

impl Job {
    fn new(state: &WatchState) -> Self {
        Self {
            watch: state.watch.clone(),
            ctx: state.ctx.clone(),
        }
    }

    async fn fire(self, event: &WatchEvent) -> Verdict {
        let started = Instant::now();
        let loop_guard = event
            .cause_branch()
            .starts_with(OWN_BRANCH_PREFIX)
            .then(|| {
                format!(
                    "loop guard: branch {} belongs to TeleCoder's own work",
                    event.cause_branch()
                )
            });
        let (session, skipped_reason) = match loop_guard {
            Some(reason) => (None, Some(reason)),
            None => match self.session_for(event).await {
                Ok(session) => (Some(session), None),
                Err(err) => (None, Some(format!("cannot start a session: {err}"))),
            },
        };
        let run = NewRun {
            watch_id: self.watch.id.clone(),
            event_key: event.event_key(),
            source_ref: event.source_ref(),
            trigger_summary: event.trigger_summary(),
            skipped_reason,
            session,
            // Records stored before the cap existed are held to it as well.
            max_runs_per_hour: self
                .watch
                .max_runs_per_hour
                .min(crate::domain::watch::MAX_RUNS_PER_HOUR_LIMIT),
        };
        let trigger_summary = run.trigger_summary.clone();
        match self.ctx.store.record_run(run).await {
            Ok(Recorded::Started { run_id, session_id }) => {
                tracing::info!(watch = %self.watch.id, session = %session_id, elapsed_ms = started.elapsed().as_millis() as u64, "watch started a session");
                self.ctx.queue.cast(QueueMsg::Kick);
                self.ctx.metrics.sessions_created.inc();
                Verdict::Started(Triggered {
                    watch_id: self.watch.id.clone(),
                    session_id,
                    run_id,
                    trigger_summary,
                })
            }
            Ok(Recorded::Skipped { reason, .. }) => {
                tracing::info!(watch = %self.watch.id, "watch skipped an event: {reason}");
                Verdict::Skipped(reason)
            }
            Ok(Recorded::Duplicate) => Verdict::Skipped(format!(
                "duplicate: this watch already handled event {}",
                event.event_key()
            )),
            Err(err) => {
                tracing::error!(watch = %self.watch.id, "cannot record a watch run: {err}");
                Verdict::Skipped(format!("cannot record the run: {err}"))
            }
        }
    }

    /// The pending session this event asks for.
    async fn session_for(&self, event: &WatchEvent) -> Result<crate::domain::Session> {
        let nonce = SessionId::random().to_string();
        let prompt = match event {
            WatchEvent::Ci(ci) => prompt::ci_prompt(&self.watch, ci, &nonce),
            WatchEvent::Pr(pr) => {
                let diff = match &pr.diff_text {
                    Some(diff) => diff.clone(),
                    None => workspace::diff_context(&self.watch.repo, &pr.base, &pr.head).await,
                };
                prompt::pr_prompt(&self.watch, pr, &diff, &nonce)
            }
            WatchEvent::Tick { slot } => prompt::schedule_prompt(&self.watch, slot),
        };
        let request = NewSession {
            repo: clone_source(&self.watch.repo),
            prompt,
            agent: Some(self.watch.agent.clone()),
            policy: Some(self.watch.policy_mode),
        };
        requests::new_session_record(&self.ctx.settings, &request, None)
    }
}

/// Where a watch's sessions clone from: `owner/name` means the GitHub repository.
fn clone_source(repo: &str) -> String {
    let key = crate::domain::watch::repo_key(repo);
    let short_form = !workspace::is_remote(repo) && !std::path::Path::new(repo).exists();
    match key.strip_prefix("github.com/") {
        Some(path) if short_form => format!("https://github.com/{path}.git"),
        _ => repo.to_owned(),
    }
}
