//! One webhook's circuit breaker, as pure state: what the attempts said,
//! and whether the next one may start.
//!
//! After [`TRIP_AFTER`] failed attempts in a row (timeouts, refused
//! connections, 5xx, 429) the circuit opens: the webhook's queued deliveries
//! are held instead of being sent into a dead endpoint, which would only
//! burn their retry schedules. After a cool-down (1 s, doubling up to
//! [`MAX_COOLDOWN`]) one probe goes out; the first success closes the
//! circuit and the flow resumes at full speed, a failure opens it again for
//! a longer cool-down.
//!
//! Each instance keeps its own breakers (on PostgreSQL, several instances
//! each judge an endpoint by their own attempts).

use std::time::Duration;

use tokio::time::Instant;

/// Failed attempts in a row that open a circuit.
pub const TRIP_AFTER: u32 = 5;
/// First cool-down of an open circuit.
const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
/// Longest cool-down between probes.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(10);

/// What an attempt says about the endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered 2xx.
    Healthy,
    /// Timeout, connection failure, 5xx or 429.
    Failing,
    /// Nothing learned (a 4xx, or the attempt was not made).
    Neutral,
}

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// Deliveries are held until the cool-down ends.
    Open,
    /// The cool-down ended and one probe is in flight; the rest wait for its answer.
    Probing,
}

impl CircuitState {
    /// The state's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::Probing => "probing",
        }
    }
}

/// A circuit as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitView {
    /// Where it stands.
    pub state: CircuitState,
    /// When an open circuit lets its probe out (unix ms); never in the past
    /// (a probe that is due goes with the next delivery due).
    pub next_probe_at: Option<i64>,
    /// Failed attempts since the last success.
    pub failures_in_a_row: u32,
}

impl CircuitView {
    /// A circuit that has seen no failure.
    pub const CLOSED: CircuitView = CircuitView {
        state: CircuitState::Closed,
        next_probe_at: None,
        failures_in_a_row: 0,
    };

    /// Whether deliveries due before `next_probe_at` are held (not sent when due).
    pub fn holds_deliveries(&self) -> bool {
        self.state != CircuitState::Closed
    }
}

/// One webhook's breaker.
#[derive(Debug, Default, Clone)]
pub struct Circuit {
    failures_in_a_row: u32,
    /// While set, the circuit is open: only a probe may go out, at or after it.
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
}

impl Circuit {
    /// Whether an attempt may start at `now`, with `in_flight` attempts of
    /// this webhook running: always while closed; while open, one probe
    /// once the cool-down is over and the attempts sent before have ended.
    pub fn may_start(&self, now: Instant, in_flight: usize) -> bool {
        match self.open_until {
            None => true,
            Some(until) => !self.probing && in_flight == 0 && now >= until,
        }
    }

    /// Notes that an attempt starts (after [`may_start`](Self::may_start)
    /// allowed it): on an open circuit, it is the probe.
    pub fn started(&mut self) {
        if self.open_until.is_some() {
            self.probing = true;
        }
    }

    /// Takes in what an attempt said.
    pub fn observe(&mut self, verdict: Verdict, now: Instant) {
        match verdict {
            Verdict::Healthy => {
                self.failures_in_a_row = 0;
                self.open_until = None;
                self.cooldown = Duration::ZERO;
            }
            Verdict::Failing => {
                self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                if self.open_until.is_some() {
                    self.cooldown = (self.cooldown * 2).clamp(FIRST_COOLDOWN, MAX_COOLDOWN);
                    self.open_until = Some(now + self.cooldown);
                } else if self.failures_in_a_row >= TRIP_AFTER {
                    self.cooldown = FIRST_COOLDOWN;
                    self.open_until = Some(now + self.cooldown);
                }
            }
            Verdict::Neutral => {}
        }
        self.probing = false;
    }

    /// Whether the circuit is closed (deliveries flow at full speed).
    pub fn is_closed(&self) -> bool {
        self.open_until.is_none()
    }

    /// Whether there is nothing to remember: closed, with no failure since
    /// the last success.
    pub fn is_clean(&self) -> bool {
        self.open_until.is_none() && self.failures_in_a_row == 0
    }

    /// The end of an open circuit's cool-down, unless its probe is out.
    pub fn probe_due_at(&self) -> Option<Instant> {
        self.open_until.filter(|_| !self.probing)
    }

    /// The circuit as users see it; `now` and `now_ms` are the same instant.
    pub fn view(&self, now: Instant, now_ms: i64) -> CircuitView {
        let state = match (self.open_until, self.probing) {
            (None, _) => CircuitState::Closed,
            (Some(_), false) => CircuitState::Open,
            (Some(_), true) => CircuitState::Probing,
        };
        let next_probe_at = self.probe_due_at().map(|until| {
            let wait = until.saturating_duration_since(now);
            now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
        });
        CircuitView {
            state,
            next_probe_at,
            failures_in_a_row: self.failures_in_a_row,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(circuit: &mut Circuit, times: u32, now: Instant) {
        for _ in 0..times {
            circuit.observe(Verdict::Failing, now);
        }
    }

    #[test]
    fn opens_after_trip_after_failures_in_a_row() {
        let now = Instant::now();
        let mut c = Circuit::default();
        failed(&mut c, TRIP_AFTER - 1, now);
        assert!(c.is_closed());
        assert!(c.may_start(now, 3), "closed: any number may run");
        c.observe(Verdict::Failing, now);
        assert!(!c.is_closed());
        assert!(!c.may_start(now, 0), "held during the cool-down");
        assert_eq!(c.probe_due_at(), Some(now + FIRST_COOLDOWN));
        let view = c.view(now, 1_000_000);
        assert_eq!(view.state, CircuitState::Open);
        assert_eq!(view.next_probe_at, Some(1_001_000));
        assert_eq!(view.failures_in_a_row, TRIP_AFTER);
        assert!(view.holds_deliveries());
    }

    #[test]
    fn a_success_or_a_neutral_answer_between_failures() {
        let now = Instant::now();
        let mut c = Circuit::default();
        failed(&mut c, TRIP_AFTER - 1, now);
        c.observe(Verdict::Healthy, now);
        failed(&mut c, TRIP_AFTER - 1, now);
        assert!(c.is_closed(), "a success starts the count again");
        c.observe(Verdict::Neutral, now);
        c.observe(Verdict::Failing, now);
        assert!(!c.is_closed(), "a 4xx says nothing: the run goes on");
    }

    #[test]
    fn one_probe_after_the_cool_down_and_only_once_the_others_ended() {
        let now = Instant::now();
        let mut c = Circuit::default();
        failed(&mut c, TRIP_AFTER, now);
        let later = now + FIRST_COOLDOWN;
        assert!(
            !c.may_start(later, 1),
            "an attempt sent before is still out"
        );
        assert!(c.may_start(later, 0));
        c.started();
        assert_eq!(c.view(later, 0).state, CircuitState::Probing);
        assert_eq!(c.view(later, 0).next_probe_at, None);
        assert_eq!(c.probe_due_at(), None);
        assert!(!c.may_start(later, 0), "one probe at a time");
        c.observe(Verdict::Healthy, later);
        assert!(c.is_clean());
        assert_eq!(c.view(later, 0), CircuitView::CLOSED);
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_the_longest() {
        let mut now = Instant::now();
        let mut c = Circuit::default();
        failed(&mut c, TRIP_AFTER, now);
        let mut expected = FIRST_COOLDOWN;
        for _ in 0..8 {
            now += expected;
            assert!(c.may_start(now, 0));
            c.started();
            c.observe(Verdict::Failing, now);
            expected = (expected * 2).min(MAX_COOLDOWN);
            assert_eq!(c.probe_due_at(), Some(now + expected));
        }
        assert_eq!(expected, MAX_COOLDOWN);
    }

    #[test]
    fn a_probe_that_was_not_made_lets_the_next_one_go() {
        let now = Instant::now();
        let mut c = Circuit::default();
        failed(&mut c, TRIP_AFTER, now);
        let later = now + FIRST_COOLDOWN;
        c.started();
        // The webhook was paused meanwhile: nothing learned.
        c.observe(Verdict::Neutral, later);
        assert_eq!(c.view(later, 0).state, CircuitState::Open);
        assert!(c.may_start(later, 0));
    }

    #[test]
    fn an_overdue_probe_is_shown_as_now() {
        let now = Instant::now();
        let mut c = Circuit::default();
        failed(&mut c, TRIP_AFTER, now);
        let view = c.view(now + Duration::from_secs(30), 5_000);
        assert_eq!(view.next_probe_at, Some(5_000));
    }
}
