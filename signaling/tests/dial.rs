//! The dial verb's sans-IO core on a fake clock: forking, first answer wins, status mapping,
//! timers, redirects, answerOnBridge, and random event orders

use std::time::{Duration, Instant};

use dialplane_signaling::dial::{
    Action, COMPLETED_ELSEWHERE, Destination, Dial, DialError, DialOptions, DialTarget, Event,
    ForkId, MAX_TARGETS,
};
use dialplane_signaling::payload::{CallSid, CallStatus, DialStatus};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn uri(i: usize) -> String {
    format!("sip:callee{i}@10.0.0.{i}")
}

fn target(uri: &str) -> DialTarget {
    DialTarget {
        call_sid: CallSid::new_random(),
        destination: Destination::Uri(uri.to_string()),
        headers: vec![("X-Tag".into(), "t".into())],
        confirm: false,
    }
}

fn screened(n: usize) -> Vec<DialTarget> {
    let mut list = targets(n);
    for t in &mut list {
        t.confirm = true;
    }
    list
}

fn targets(n: usize) -> Vec<DialTarget> {
    (0..n).map(|i| target(&uri(i))).collect()
}

/// A dial on a fake clock starting at `t0`
struct Run {
    dial: Dial,
    t0: Instant,
}

impl Run {
    fn new(targets: Vec<DialTarget>, options: DialOptions) -> (Self, Vec<Action>) {
        let t0 = Instant::now();
        let dial = Dial::new(t0, targets, options).unwrap();
        let mut run = Self { dial, t0 };
        let first = run.drain();
        (run, first)
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.dial.poll_action()).collect()
    }

    fn event(&mut self, ms: u64, event: Event) -> Vec<Action> {
        self.dial.handle(self.at(ms), event);
        self.drain()
    }

    fn timeout(&mut self, at: Instant) -> Vec<Action> {
        self.dial.handle_timeout(at);
        self.drain()
    }
}

fn answered(fork: usize) -> Event {
    Event::Answered { fork: ForkId(fork) }
}

fn failed(fork: usize, status: u16) -> Event {
    Event::Failed {
        fork: ForkId(fork),
        status,
    }
}

fn ringing(fork: usize) -> Event {
    Event::Provisional {
        fork: ForkId(fork),
        status: 180,
        has_sdp: false,
    }
}

fn early_media(fork: usize) -> Event {
    Event::Provisional {
        fork: ForkId(fork),
        status: 183,
        has_sdp: true,
    }
}

fn invites(actions: &[Action]) -> Vec<(ForkId, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Invite { fork, uri, .. } => Some((*fork, uri.clone())),
            _ => None,
        })
        .collect()
}

fn cancels(actions: &[Action]) -> Vec<(ForkId, Option<&'static str>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { fork, reason } => Some((*fork, *reason)),
            _ => None,
        })
        .collect()
}

fn statuses(actions: &[Action]) -> Vec<(usize, CallStatus, u16)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ForkStatus {
                fork,
                status,
                sip_status,
                ..
            } => Some((fork.0, *status, *sip_status)),
            _ => None,
        })
        .collect()
}

fn finished(actions: &[Action]) -> Option<&dialplane_signaling::dial::DialOutcome> {
    let mut found = actions.iter().filter_map(|a| match a {
        Action::Finished(outcome) => Some(outcome),
        _ => None,
    });
    let first = found.next();
    assert!(found.next().is_none(), "two Finished in {actions:?}");
    first
}

/// dial_status, dial_sip_status, index of the reported fork
type Reported = (DialStatus, u16, usize);

fn result(run: &Run, actions: &[Action]) -> Reported {
    let outcome = finished(actions).unwrap_or_else(|| panic!("not finished: {actions:?}"));
    let r = outcome.result;
    assert_eq!(r.dial_status, r.dial_call_status);
    let fork = (0..MAX_TARGETS)
        .find(|&i| run.dial.call_sid(ForkId(i)) == Some(r.dial_call_sid))
        .unwrap();
    (r.dial_status, r.dial_sip_status, fork)
}

fn ring_all(run: &mut Run, n: usize) {
    for i in 0..n {
        run.event(10, ringing(i));
    }
}

#[test]
fn ten_targets_ten_invites_then_nine_cancels_with_the_reason() {
    let (mut run, start) = Run::new(targets(10), DialOptions::default());
    let sent = invites(&start);
    assert_eq!(sent.len(), 10);
    for (i, (fork, u)) in sent.iter().enumerate() {
        assert_eq!((fork.0, u.as_str()), (i, uri(i).as_str()));
    }
    assert!(start.iter().all(|a| match a {
        Action::Invite {
            headers, caller_id, ..
        } => headers == &[("X-Tag".to_string(), "t".to_string())] && caller_id.is_none(),
        _ => true,
    }));
    ring_all(&mut run, 10);
    let won = run.event(500, answered(3));
    let c = cancels(&won);
    assert_eq!(c.len(), 9, "{won:?}");
    assert!(
        c.iter()
            .all(|&(f, r)| f != ForkId(3) && r == Some(COMPLETED_ELSEWHERE))
    );
    assert_eq!(
        COMPLETED_ELSEWHERE,
        "SIP;cause=200;text=\"Call completed elsewhere\""
    );
    assert_eq!(
        won.iter()
            .filter(|a| matches!(a, Action::Bridge { fork: ForkId(3) }))
            .count(),
        1
    );
    assert!(finished(&won).is_none(), "the dial goes on while bridged");
    // The losers' 487s change nothing.
    for i in (0..10).filter(|&i| i != 3) {
        assert_eq!(run.event(510, failed(i, 487)), vec![]);
    }
    let end = run.event(9_000, Event::BridgeEnded { by_callee: true });
    assert!(!end.iter().any(|a| matches!(a, Action::Bye { .. })));
    assert_eq!(result(&run, &end), (DialStatus::Completed, 200, 3));
    let report = &finished(&end).unwrap().forks;
    assert_eq!(report.len(), 10);
    for r in report {
        let expected = if r.fork.0 == 3 {
            (CallStatus::Completed, 200)
        } else {
            (CallStatus::NoAnswer, 487)
        };
        assert_eq!((r.status, r.sip_status), expected, "{r:?}");
    }
}

#[test]
fn two_answers_in_the_same_instant_leave_one_leg_up() {
    let (mut run, _) = Run::new(targets(2), DialOptions::default());
    ring_all(&mut run, 2);
    let mut all = run.event(100, answered(1));
    all.extend(run.event(100, answered(0)));
    let bridges: Vec<_> = all
        .iter()
        .filter(|a| matches!(a, Action::Bridge { .. }))
        .collect();
    assert_eq!(bridges, vec![&Action::Bridge { fork: ForkId(1) }]);
    assert_eq!(cancels(&all), vec![(ForkId(0), Some(COMPLETED_ELSEWHERE))]);
    let kills: Vec<_> = all
        .iter()
        .filter(|a| matches!(a, Action::AckAndBye { .. }))
        .collect();
    assert_eq!(kills, vec![&Action::AckAndBye { fork: ForkId(0) }]);
    // A retransmitted 2xx is not killed twice, nor is the winner's.
    assert_eq!(run.event(101, answered(0)), vec![]);
    assert_eq!(run.event(101, answered(1)), vec![]);
}

#[test]
fn the_most_telling_status_wins_across_forks() {
    let cases: &[(&[u16], Reported)] = &[
        (&[503, 486, 408], (DialStatus::Busy, 486, 1)),
        (&[404, 600], (DialStatus::Busy, 600, 1)),
        (&[404, 480, 408], (DialStatus::NoAnswer, 480, 1)),
        (&[503, 408], (DialStatus::NoAnswer, 408, 1)),
        (&[404, 503, 603], (DialStatus::Failed, 404, 0)),
        (&[487], (DialStatus::Failed, 487, 0)),
    ];
    for (codes, expected) in cases {
        let (mut run, _) = Run::new(targets(codes.len()), DialOptions::default());
        let mut last = Vec::new();
        for (i, &code) in codes.iter().enumerate() {
            assert!(finished(&last).is_none(), "finished early: {codes:?}");
            last = run.event(20 * i as u64, failed(i, code));
        }
        assert_eq!(result(&run, &last), *expected, "{codes:?}");
    }
    // A transaction timeout is a 408.
    let (mut run, _) = Run::new(targets(2), DialOptions::default());
    run.event(5, failed(0, 500));
    let end = run.event(32_000, Event::ForkTimedOut { fork: ForkId(1) });
    assert_eq!(result(&run, &end), (DialStatus::NoAnswer, 408, 1));
    assert_eq!(statuses(&end), vec![(1, CallStatus::NoAnswer, 408)]);
}

#[test]
fn ring_timeout_cancels_at_exactly_timeout() {
    let options = DialOptions {
        timeout: Duration::from_secs(20),
        ..DialOptions::default()
    };
    let (mut run, _) = Run::new(targets(3), options);
    run.event(10, ringing(0));
    run.event(10, failed(2, 503));
    let deadline = run.at(20_000);
    assert_eq!(run.dial.poll_timeout(), Some(deadline));
    assert_eq!(run.timeout(deadline - Duration::from_nanos(1)), vec![]);
    let fired = run.timeout(deadline);
    assert_eq!(
        cancels(&fired),
        vec![(ForkId(0), None), (ForkId(1), None)],
        "plain CANCELs to the ringing forks only"
    );
    assert_eq!(
        statuses(&fired),
        vec![
            (0, CallStatus::NoAnswer, 487),
            (1, CallStatus::NoAnswer, 487)
        ]
    );
    assert_eq!(result(&run, &fired), (DialStatus::NoAnswer, 487, 0));
    assert_eq!(run.dial.poll_timeout(), None);
    assert_eq!(run.timeout(deadline + Duration::from_secs(1)), vec![]);
}

#[test]
fn time_limit_byes_the_callee_at_exactly_bridge_plus_limit() {
    let options = DialOptions {
        time_limit: Some(Duration::from_secs(30)),
        ..DialOptions::default()
    };
    let (mut run, _) = Run::new(targets(2), options);
    run.event(1_000, ringing(0));
    run.event(5_000, answered(0));
    let deadline = run.at(35_000);
    assert_eq!(
        run.dial.poll_timeout(),
        Some(deadline),
        "ring timer stopped"
    );
    assert_eq!(run.timeout(deadline - Duration::from_millis(1)), vec![]);
    let fired = run.timeout(deadline);
    assert_eq!(fired[0], Action::Bye { fork: ForkId(0) });
    assert_eq!(statuses(&fired), vec![(0, CallStatus::Completed, 200)]);
    assert_eq!(result(&run, &fired), (DialStatus::Completed, 200, 0));
    // The callee's 200 to our BYE shows up as the bridge ending: nothing more.
    assert_eq!(
        run.event(35_010, Event::BridgeEnded { by_callee: true }),
        vec![]
    );
}

#[test]
fn a_bridged_call_ends_by_either_side() {
    for (event, bye) in [
        (Event::BridgeEnded { by_callee: true }, false),
        (Event::BridgeEnded { by_callee: false }, true),
        (Event::CallerHungUp, true),
        (Event::HangUp, true),
    ] {
        let (mut run, _) = Run::new(targets(1), DialOptions::default());
        run.event(5, answered(0));
        let end = run.event(50, event.clone());
        assert_eq!(
            end.contains(&Action::Bye { fork: ForkId(0) }),
            bye,
            "{event:?}: {end:?}"
        );
        assert_eq!(result(&run, &end), (DialStatus::Completed, 200, 0));
    }
}

#[test]
fn caller_hangup_while_ringing_cancels_every_fork_and_reports_each() {
    let (mut run, _) = Run::new(targets(4), DialOptions::default());
    run.event(10, ringing(0));
    run.event(10, early_media(1));
    run.event(20, failed(3, 486));
    let gone = run.event(30, Event::CallerHungUp);
    assert_eq!(
        cancels(&gone),
        vec![(ForkId(0), None), (ForkId(1), None), (ForkId(2), None)]
    );
    let report: Vec<_> = finished(&gone)
        .unwrap()
        .forks
        .iter()
        .map(|r| (r.fork.0, r.status, r.sip_status))
        .collect();
    assert_eq!(
        report,
        vec![
            (0, CallStatus::NoAnswer, 487),
            (1, CallStatus::NoAnswer, 487),
            (2, CallStatus::NoAnswer, 487),
            (3, CallStatus::Busy, 486),
        ]
    );
    assert_eq!(result(&run, &gone).0, DialStatus::Busy);
    // A 2xx that crossed the CANCEL is ACKed and hung up, even after the end.
    assert_eq!(
        run.event(40, answered(2)),
        vec![Action::AckAndBye { fork: ForkId(2) }]
    );
    assert_eq!(run.event(41, failed(0, 487)), vec![]);
}

#[test]
fn rest_no_answer_cancels_the_ringing_forks() {
    let (mut run, _) = Run::new(targets(2), DialOptions::default());
    ring_all(&mut run, 2);
    let stop = run.event(3_000, Event::CancelRinging);
    assert_eq!(cancels(&stop), vec![(ForkId(0), None), (ForkId(1), None)]);
    assert_eq!(result(&run, &stop), (DialStatus::NoAnswer, 487, 0));
    // While bridged there is nothing ringing: REST no-answer changes nothing.
    let (mut run, _) = Run::new(targets(1), DialOptions::default());
    run.event(5, answered(0));
    assert_eq!(run.event(6, Event::CancelRinging), vec![]);
    assert!(!run.dial.is_finished());
}

#[test]
fn redirects_are_followed_five_times_and_the_sixth_fails_the_fork() {
    let (mut run, _) = Run::new(targets(2), DialOptions::default());
    for hop in 1..=5u64 {
        let next = format!("sip:hop{hop}@example.net");
        let out = run.event(
            hop * 10,
            Event::Redirected {
                fork: ForkId(0),
                status: 302,
                // The original URI is skipped: already tried.
                contacts: vec![uri(0), next.clone()],
            },
        );
        assert_eq!(invites(&out), vec![(ForkId(0), next)], "hop {hop}");
    }
    let sixth = run.event(
        60,
        Event::Redirected {
            fork: ForkId(0),
            status: 302,
            contacts: vec!["sip:hop6@example.net".into()],
        },
    );
    assert_eq!(invites(&sixth), vec![]);
    assert_eq!(statuses(&sixth), vec![(0, CallStatus::Failed, 302)]);
    let end = run.event(70, failed(1, 404));
    assert_eq!(result(&run, &end), (DialStatus::Failed, 302, 0));

    // A redirect to nothing new fails the fork with the 3xx.
    let (mut run, _) = Run::new(targets(1), DialOptions::default());
    let out = run.event(
        5,
        Event::Redirected {
            fork: ForkId(0),
            status: 301,
            contacts: vec![uri(0)],
        },
    );
    assert_eq!(result(&run, &out), (DialStatus::Failed, 301, 0));
}

#[test]
fn answer_on_bridge_false_answers_the_caller_before_the_outdial() {
    let (mut run, start) = Run::new(targets(2), DialOptions::default());
    assert_eq!(start[0], Action::AnswerCaller);
    assert_eq!(invites(&start).len(), 2);
    let ring = run.event(10, early_media(0));
    assert!(!ring.iter().any(|a| matches!(a, Action::RingCaller { .. })));
    let won = run.event(20, answered(0));
    assert!(won.contains(&Action::Bridge { fork: ForkId(0) }));
    assert!(!won.contains(&Action::AnswerCaller));
}

#[test]
fn answer_on_bridge_true_rings_the_caller_and_answers_after_the_bridge() {
    let aob = DialOptions {
        answer_on_bridge: true,
        ..DialOptions::default()
    };
    // Several targets: 180 only, whatever media they offer.
    let (mut run, start) = Run::new(targets(2), aob.clone());
    assert!(!start.contains(&Action::AnswerCaller));
    assert_eq!(
        run.event(
            5,
            Event::Provisional {
                fork: ForkId(0),
                status: 100,
                has_sdp: false
            }
        ),
        vec![]
    );
    let ring = run.event(10, early_media(1));
    assert!(ring.contains(&Action::RingCaller {
        status: 180,
        early_media_from: None
    }));
    let again = run.event(11, ringing(0));
    assert!(!again.iter().any(|a| matches!(a, Action::RingCaller { .. })));
    let won = run.event(20, answered(1));
    let bridge = won
        .iter()
        .position(|a| *a == Action::Bridge { fork: ForkId(1) });
    let answer = won.iter().position(|a| *a == Action::AnswerCaller);
    assert!(bridge.unwrap() < answer.unwrap(), "{won:?}");

    // One target, no dialMusic: 180 first, then the callee's early media.
    let (mut run, _) = Run::new(targets(1), aob.clone());
    let ring = run.event(10, ringing(0));
    assert!(ring.contains(&Action::RingCaller {
        status: 180,
        early_media_from: None
    }));
    let media = run.event(20, early_media(0));
    assert!(media.contains(&Action::RingCaller {
        status: 183,
        early_media_from: Some(ForkId(0))
    }));
    assert!(
        !run.event(30, early_media(0))
            .iter()
            .any(|a| matches!(a, Action::RingCaller { .. }))
    );

    // With dialMusic the caller hears our own early media from the start, never the callee's.
    let music = DialOptions {
        dial_music: true,
        ..aob
    };
    let (mut run, start) = Run::new(targets(1), music);
    assert_eq!(
        start[0],
        Action::RingCaller {
            status: 183,
            early_media_from: None
        }
    );
    assert!(
        !run.event(10, early_media(0))
            .iter()
            .any(|a| matches!(a, Action::RingCaller { .. }))
    );
}

#[test]
fn fork_statuses_are_reported_in_order_once_each() {
    let (mut run, start) = Run::new(targets(1), DialOptions::default());
    let mut all = start;
    all.extend(run.event(
        5,
        Event::Provisional {
            fork: ForkId(0),
            status: 100,
            has_sdp: false,
        },
    ));
    all.extend(run.event(10, ringing(0)));
    all.extend(run.event(11, ringing(0)));
    all.extend(run.event(20, early_media(0)));
    all.extend(run.event(21, ringing(0)));
    all.extend(run.event(30, answered(0)));
    all.extend(run.event(90, Event::BridgeEnded { by_callee: true }));
    assert_eq!(
        statuses(&all),
        vec![
            (0, CallStatus::Trying, 100),
            (0, CallStatus::Ringing, 180),
            (0, CallStatus::EarlyMedia, 183),
            (0, CallStatus::InProgress, 200),
            (0, CallStatus::Completed, 200),
        ]
    );
    let sid = run.dial.call_sid(ForkId(0)).unwrap();
    assert!(all.iter().all(|a| match a {
        Action::ForkStatus { call_sid, .. } => *call_sid == sid,
        _ => true,
    }));
}

#[test]
fn options_come_from_the_verb() {
    use dialplane_signaling::verbs::{Verb, parse_app};
    let dial = |json: &str| match parse_app(json).unwrap().remove(0) {
        Verb::Dial(dial) => DialOptions::from(&*dial),
        other => panic!("{other:?}"),
    };
    let sip = r#""target":[{"type":"sip","sipUri":"sip:a@b"}]"#;
    assert_eq!(
        dial(&format!(r#"[{{"verb":"dial",{sip}}}]"#)),
        DialOptions::default()
    );
    assert_eq!(
        dial(&format!(
            r#"[{{"verb":"dial",{sip},"answerOnBridge":true,"timeout":15,"timeLimit":90,
            "callerId":"+16173331212","dialMusic":"https://example.com/ring.mp3"}}]"#
        )),
        DialOptions {
            answer_on_bridge: true,
            timeout: Duration::from_secs(15),
            time_limit: Some(Duration::from_secs(90)),
            caller_id: Some("+16173331212".into()),
            dial_music: true,
        }
    );
}

#[test]
fn duplicate_targets_collapse_and_limits_hold() {
    let mut list = targets(3);
    list.push(target(&uri(1)));
    list.insert(0, target(&uri(2)));
    let (_, start) = Run::new(list, DialOptions::default());
    let uris: Vec<String> = invites(&start).into_iter().map(|(_, u)| u).collect();
    assert_eq!(uris, vec![uri(2), uri(0), uri(1)]);

    let mut eleven = targets(10);
    eleven.push(target(&uri(9)));
    let (_, start) = Run::new(eleven, DialOptions::default());
    assert_eq!(invites(&start).len(), 10);

    let now = Instant::now();
    assert_eq!(
        Dial::new(now, targets(11), DialOptions::default()).err(),
        Some(DialError::TooManyTargets(11))
    );
    assert_eq!(
        Dial::new(now, vec![], DialOptions::default()).err(),
        Some(DialError::NoTargets)
    );
}

#[test]
fn unroutable_targets_fail_at_once() {
    let mut list = targets(1);
    list.push(DialTarget {
        call_sid: CallSid::new_random(),
        destination: Destination::Unroutable(404),
        headers: vec![],
        confirm: false,
    });
    let (mut run, start) = Run::new(list, DialOptions::default());
    assert_eq!(invites(&start).len(), 1);
    assert!(statuses(&start).contains(&(1, CallStatus::Failed, 404)));
    let end = run.event(10, failed(0, 480));
    assert_eq!(result(&run, &end), (DialStatus::NoAnswer, 480, 0));

    let only = vec![DialTarget {
        call_sid: CallSid::new_random(),
        destination: Destination::Unroutable(404),
        headers: vec![],
        confirm: false,
    }];
    let (run, start) = Run::new(only, DialOptions::default());
    assert_eq!(result(&run, &start), (DialStatus::Failed, 404, 0));
    assert_eq!(run.dial.poll_timeout(), None);
}

#[test]
fn events_after_finished_are_ignored_and_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let (mut run, _) = Run::new(targets(3), DialOptions::default());
        run.event(5, failed(0, 486));
        run.event(6, answered(1));
        // A 180 crossing the CANCEL.
        assert_eq!(run.event(7, ringing(2)), vec![]);
        let end = run.event(8, Event::BridgeEnded { by_callee: true });
        assert!(finished(&end).is_some());
        for event in [
            ringing(1),
            answered(0),
            answered(1),
            failed(1, 500),
            Event::ForkTimedOut { fork: ForkId(0) },
            Event::Redirected {
                fork: ForkId(1),
                status: 302,
                contacts: vec!["sip:x@y".into()],
            },
            answered(7),
            Event::CallerHungUp,
            Event::CancelRinging,
            Event::HangUp,
            Event::BridgeEnded { by_callee: true },
            failed(0, 200),
        ] {
            assert_eq!(run.event(10, event.clone()), vec![], "{event:?}");
        }
        assert_eq!(run.timeout(run.at(3_600_000)), vec![]);
    });
    let mut ignored = std::collections::BTreeMap::new();
    let mut outcomes = Vec::new();
    let mut forks = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let key = key.key();
        match key.name() {
            "dialplane_dial_ignored_events_total" => {
                let reason = key.labels().next().unwrap().value().to_string();
                *ignored.entry(reason).or_insert(0) += n;
            }
            "dialplane_dial_forks_total" => forks += n,
            "dialplane_dial_outcomes_total" => {
                let label = key.labels().next().unwrap();
                outcomes.push((label.key().to_string(), label.value().to_string(), n));
            }
            _ => {}
        }
    }
    let ignored: Vec<(&str, u64)> = ignored.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        ignored,
        vec![
            ("after_cancel", 1),
            ("after_finish", 10),
            ("bad_status", 1),
            ("unknown_fork", 1)
        ]
    );
    assert_eq!(forks, 3);
    assert_eq!(outcomes, vec![("status".into(), "completed".into(), 1)]);
}

#[test]
fn confirm_hook_screens_each_answer_while_the_others_ring() {
    let (mut run, _) = Run::new(screened(3), DialOptions::default());
    ring_all(&mut run, 3);
    let first = run.event(100, answered(0));
    assert_eq!(
        first,
        vec![
            Action::ForkStatus {
                fork: ForkId(0),
                call_sid: run.dial.call_sid(ForkId(0)).unwrap(),
                status: CallStatus::InProgress,
                sip_status: 200,
            },
            Action::RunConfirm { fork: ForkId(0) }
        ]
    );
    let second = run.event(200, answered(1));
    assert!(second.contains(&Action::RunConfirm { fork: ForkId(1) }));
    // The second screening passes first: it wins, the first is hung up, the third cancelled.
    let won = run.event(300, Event::Confirmed { fork: ForkId(1) });
    assert!(won.contains(&Action::Bridge { fork: ForkId(1) }));
    assert!(won.contains(&Action::Bye { fork: ForkId(0) }));
    assert_eq!(cancels(&won), vec![(ForkId(2), Some(COMPLETED_ELSEWHERE))]);
    assert_eq!(
        statuses(&won),
        vec![
            (2, CallStatus::NoAnswer, 487),
            (0, CallStatus::Completed, 200)
        ]
    );
    assert_eq!(run.event(301, Event::Confirmed { fork: ForkId(0) }), vec![]);
    let end = run.event(5_000, Event::BridgeEnded { by_callee: false });
    assert_eq!(end[0], Action::Bye { fork: ForkId(1) });
    assert_eq!(result(&run, &end), (DialStatus::Completed, 200, 1));
}

#[test]
fn declined_screenings_and_hangups_during_confirm() {
    // Every screening declined: the dial fails with 603 once nothing is left.
    let (mut run, _) = Run::new(screened(2), DialOptions::default());
    run.event(10, answered(0));
    let out = run.event(
        20,
        Event::ConfirmDeclined {
            fork: ForkId(0),
            by_callee: false,
        },
    );
    assert_eq!(out[0], Action::Bye { fork: ForkId(0) });
    assert!(finished(&out).is_none(), "fork 1 still rings");
    let end = run.event(30, failed(1, 404));
    assert_eq!(result(&run, &end), (DialStatus::Failed, 603, 0));

    // The ring timeout spares a screening in progress; it may still win.
    let options = DialOptions {
        timeout: Duration::from_secs(10),
        ..DialOptions::default()
    };
    let (mut run, _) = Run::new(screened(2), options);
    run.event(10, answered(0));
    let fired = run.timeout(run.at(10_000));
    assert_eq!(cancels(&fired), vec![(ForkId(1), None)]);
    assert!(finished(&fired).is_none());
    let won = run.event(12_000, Event::Confirmed { fork: ForkId(0) });
    assert!(won.contains(&Action::Bridge { fork: ForkId(0) }));

    // The caller hanging up ends the screenings too.
    let (mut run, _) = Run::new(screened(2), DialOptions::default());
    run.event(10, answered(0));
    let gone = run.event(20, Event::CallerHungUp);
    assert!(gone.contains(&Action::Bye { fork: ForkId(0) }));
    assert_eq!(cancels(&gone), vec![(ForkId(1), None)]);
    assert_eq!(result(&run, &gone), (DialStatus::NoAnswer, 487, 0));
    let report = &finished(&gone).unwrap().forks;
    assert_eq!(
        (report[0].status, report[0].sip_status),
        (CallStatus::Completed, 200)
    );
}

/// Random events in random order: never more than one bridge, every fork ends final, one
/// Finished, and a 2xx never leaves a callee connected to nothing
#[test]
fn random_event_orders_keep_the_invariants() {
    for seed in 0..2_000u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(1..=MAX_TARGETS);
        let options = DialOptions {
            answer_on_bridge: rng.random_bool(0.5),
            timeout: Duration::from_secs(rng.random_range(1..=60)),
            time_limit: rng
                .random_bool(0.5)
                .then(|| Duration::from_secs(rng.random_range(1..=60))),
            caller_id: None,
            dial_music: rng.random_bool(0.3),
        };
        let mut list = targets(n);
        for t in &mut list {
            t.confirm = rng.random_bool(0.3);
        }
        let (mut run, mut all) = Run::new(list, options);
        let mut ms = 0u64;
        for _ in 0..rng.random_range(1..40) {
            ms += rng.random_range(0..3_000);
            let fork = rng.random_range(0..n + 1);
            let event = match rng.random_range(0..15) {
                0 | 1 => ringing(fork),
                2 => early_media(fork),
                3 | 4 => answered(fork),
                5 => failed(fork, [404, 486, 480, 487, 503, 600][rng.random_range(0..6)]),
                6 => Event::ForkTimedOut { fork: ForkId(fork) },
                7 => Event::Redirected {
                    fork: ForkId(fork),
                    status: 302,
                    contacts: vec![format!("sip:r{}@x", rng.random_range(0..4))],
                },
                8 => Event::CallerHungUp,
                9 => Event::CancelRinging,
                10 => Event::HangUp,
                11 => Event::BridgeEnded {
                    by_callee: rng.random_bool(0.5),
                },
                12 => Event::Confirmed { fork: ForkId(fork) },
                13 => Event::ConfirmDeclined {
                    fork: ForkId(fork),
                    by_callee: rng.random_bool(0.5),
                },
                _ => {
                    all.extend(run.timeout(run.at(ms)));
                    continue;
                }
            };
            all.extend(run.event(ms, event));
        }
        // Whatever happened, time passing and a hangup end it.
        all.extend(run.timeout(run.at(ms + 120_000)));
        all.extend(run.event(ms + 120_000, Event::HangUp));
        assert!(run.dial.is_finished(), "seed {seed}");
        assert_eq!(run.dial.poll_timeout(), None, "seed {seed}");

        let bridges: Vec<ForkId> = all
            .iter()
            .filter_map(|a| match a {
                Action::Bridge { fork } => Some(*fork),
                _ => None,
            })
            .collect();
        assert!(bridges.len() <= 1, "seed {seed}: {all:?}");
        let outcome = finished(&all).unwrap_or_else(|| panic!("seed {seed}"));
        assert_eq!(outcome.forks.len(), n);
        for r in &outcome.forks {
            assert!(
                matches!(
                    r.status,
                    CallStatus::Completed
                        | CallStatus::Busy
                        | CallStatus::NoAnswer
                        | CallStatus::Failed
                ),
                "seed {seed}: {r:?}"
            );
            // The last status each fork reported is its final one.
            let last = statuses(&all).into_iter().rev().find(|s| s.0 == r.fork.0);
            assert_eq!(
                last,
                Some((r.fork.0, r.status, r.sip_status)),
                "seed {seed}"
            );
        }
        let finish_at = all
            .iter()
            .position(|a| matches!(a, Action::Finished(_)))
            .unwrap();
        assert!(
            all[finish_at + 1..]
                .iter()
                .all(|a| matches!(a, Action::AckAndBye { .. })),
            "seed {seed}: only late 2xx are handled after the end: {all:?}"
        );
        match bridges.first() {
            Some(&winner) => {
                assert_eq!(outcome.result.dial_status, DialStatus::Completed);
                assert_eq!(
                    Some(outcome.result.dial_call_sid),
                    run.dial.call_sid(winner)
                );
                assert!(!cancels(&all).iter().any(|&(f, _)| f == winner));
            }
            None => assert_ne!(outcome.result.dial_status, DialStatus::Completed),
        }
        // Every fork answered at most once is either the winner or killed with ACK+BYE.
        for f in 0..n {
            let kills = all
                .iter()
                .filter(|a| **a == Action::AckAndBye { fork: ForkId(f) })
                .count();
            assert!(kills <= 1, "seed {seed}");
            if kills == 1 {
                assert!(cancels(&all).iter().any(|&(c, _)| c == ForkId(f)));
            }
        }
    }
}
