//! The scored AMD test: our detector and the app_amd baseline on the same labelled corpus
//! (amd_support::corpus, ≥ 200 recordings). Prints both confusion matrices; asserts that ours
//! is at least 90 % accurate and strictly more accurate than app_amd, that a plain "Hello?"
//! at 0.3 s is human within 2 s for every voice, and that every beep is reported within
//! ±2 % of its frequency and 30 ms of its end.
mod amd_support;
mod support;

use std::collections::HashMap;
use std::time::Instant;

use amd_support::{AppAmd, AppAmdConfig, Recording, Truth, app_amd, corpus};
use dialplane_dsp::amd::{Amd, AmdConfig, AmdEvent, AmdType};
use dialplane_dsp::spectrum::Spectrum;

const COLS: [&str; 5] = ["human", "machine", "silence", "fax", "none"];
const ROWS: [Truth; 4] = [Truth::Human, Truth::Machine, Truth::Silence, Truth::Fax];

fn run_ours(x: &[f32]) -> Vec<AmdEvent> {
    let mut spectrum = Spectrum::new();
    let mut amd = Amd::new(AmdConfig::default());
    let mut events = Vec::new();
    for frame in x.chunks(160) {
        spectrum.push(frame, |s| amd.on_hop(s, &mut events));
    }
    amd.finish(&mut events);
    events
}

/// The decision column and its time
fn decision(events: &[AmdEvent]) -> (usize, Option<u64>) {
    for e in events {
        match *e {
            AmdEvent::Amd { amd_type, at_ms } => {
                let col = match amd_type {
                    AmdType::Human => 0,
                    AmdType::Machine => 1,
                    AmdType::Fax => 3,
                };
                return (col, Some(at_ms));
            }
            AmdEvent::Silence { at_ms } => return (2, Some(at_ms)),
            _ => {}
        }
    }
    (4, None)
}

fn correct_col(t: Truth) -> usize {
    match t {
        Truth::Human => 0,
        Truth::Machine => 1,
        Truth::Silence => 2,
        Truth::Fax => 3,
    }
}

fn print_matrix(title: &str, m: &HashMap<(Truth, usize), usize>, last: &str) -> f64 {
    let mut right = 0;
    let mut total = 0;
    println!("\n{title} (rows = truth, columns = decision)");
    print!("{:>9}", "");
    for (i, c) in COLS.iter().enumerate() {
        print!("{:>9}", if i == 4 { last } else { c });
    }
    println!();
    for t in ROWS {
        print!("{:>9}", format!("{t:?}").to_lowercase());
        for c in 0..COLS.len() {
            let n = m.get(&(t, c)).copied().unwrap_or(0);
            print!("{n:>9}");
            total += n;
            if c == correct_col(t) {
                right += n;
            }
        }
        println!();
    }
    let acc = right as f64 / total as f64;
    println!("accuracy {right}/{total} = {:.1} %", 100.0 * acc);
    acc
}

#[test]
fn amd_beats_app_amd_on_the_corpus() {
    let t0 = Instant::now();
    let recordings: Vec<Recording> = corpus();
    let generated = t0.elapsed();
    assert!(recordings.len() >= 200, "{} recordings", recordings.len());

    let results: Vec<(Vec<AmdEvent>, (AppAmd, u64))> = std::thread::scope(|scope| {
        let chunks: Vec<_> = recordings
            .chunks(recordings.len().div_ceil(4))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|r| {
                            (
                                run_ours(&r.samples),
                                app_amd(&r.samples, &AppAmdConfig::default()),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });

    let mut ours = HashMap::new();
    let mut base = HashMap::new();
    let mut failures = Vec::new();
    let mut plain_hello_times = Vec::new();
    for (r, (events, (b, b_ms))) in recordings.iter().zip(&results) {
        let (col, at) = decision(events);
        *ours.entry((r.truth, col)).or_insert(0) += 1;
        let bcol = match b {
            AppAmd::Human | AppAmd::NotSure => 0, // dialers connect a NOTSURE call
            AppAmd::Machine => 1,
            AppAmd::Silence => 2,
        };
        let bcol_print = if *b == AppAmd::NotSure { 4 } else { bcol };
        *base.entry((r.truth, bcol_print)).or_insert(0) += 1;
        if col != correct_col(r.truth) {
            println!(
                "ours wrong: {} → {} at {at:?} ms; {events:?}",
                r.name, COLS[col]
            );
        }
        if bcol != correct_col(r.truth) {
            println!("app_amd wrong: {} → {b:?} at {b_ms} ms", r.name);
        }
        // Exactly one decision event.
        let decisions = events
            .iter()
            .filter(|e| matches!(e, AmdEvent::Amd { .. } | AmdEvent::Silence { .. }))
            .count();
        if decisions != 1 {
            failures.push(format!("{}: {decisions} decisions: {events:?}", r.name));
        }
        if r.plain_hello {
            plain_hello_times.push((r.name.clone(), col, at));
            if col != 0 || at.is_none_or(|t| t >= 2000) {
                failures.push(format!(
                    "plain hello not human within 2 s: {} → {events:?}",
                    r.name
                ));
            }
        }
        if let Some((start, end, freq)) = r.beep {
            let end_ms = end as f64 / 8.0;
            let beeps: Vec<_> = events
                .iter()
                .filter_map(|e| match *e {
                    AmdEvent::Beep {
                        at_ms,
                        frequency_hz,
                    } => Some((at_ms, frequency_hz)),
                    _ => None,
                })
                .collect();
            let ok = beeps.len() == 1
                && (beeps[0].0 as f64 - end_ms).abs() <= 30.0
                && (beeps[0].1 as f32 - freq).abs() <= 0.02 * freq;
            if !ok {
                failures.push(format!(
                    "{}: beep {freq:.1} Hz {:.0}..{end_ms:.0} ms reported as {beeps:?}",
                    r.name,
                    start as f64 / 8.0
                ));
            }
        } else if r.truth != Truth::Fax {
            let beeps = events
                .iter()
                .filter(|e| matches!(e, AmdEvent::Beep { .. }))
                .count();
            if beeps > 0 {
                failures.push(format!(
                    "{}: beep reported, none played: {events:?}",
                    r.name
                ));
            }
        }
    }
    let acc_ours = print_matrix("dialplane AMD", &ours, "none");
    let acc_base = print_matrix(
        "app_amd baseline (NOTSURE scored as human)",
        &base,
        "notsure",
    );
    println!("\nplain \"Hello?\" at 0.3 s: {plain_hello_times:?}");
    println!(
        "{} recordings; generated in {:.1} s, scored in {:.1} s",
        recordings.len(),
        generated.as_secs_f64(),
        (t0.elapsed() - generated).as_secs_f64()
    );
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{} failures (see above)",
        failures.len()
    );
    assert!(acc_ours >= 0.90, "accuracy {acc_ours}");
    assert!(acc_ours > acc_base, "ours {acc_ours} vs app_amd {acc_base}");
}
