//! `dialplane media` behind Kamailio 5.6's rtpengine module, as carriers deploy rtpengine: SIPp
//! calls through Kamailio (which sends `offer`/`answer`/`delete` over ng), RTP from SIPp's pcap
//! player through our relay to a SIPp UAS that echoes it back. The relay's own counters (ng
//! `statistics`) must show the media both ways, and every call deleted at the end. With two
//! relays in Kamailio's set, each takes some of the calls.
//!
//! Needs `kamailio` and `sipp` (Debian `kamailio`, `sip-tester`; `make deps` installs them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use media::ng::Value;

mod common;
use common::{Relay, free_udp_port, get, spawn, wait_answer};

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio")
}

fn work_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// Packets received from and sent to each party of `call`, per its ng `query`.
fn party_traffic(relay: &mut Relay, call: &str) -> Vec<(String, i64, i64)> {
    let q = relay.ng(&[("command", "query".into()), ("call-id", call.into())]);
    let Some(Value::Dict(tags)) = q.dict.get("tags") else {
        return Vec::new();
    };
    tags.iter()
        .map(|(tag, party)| {
            let party = party.as_dict().expect("party");
            let stream = get(party, &["medias", "0", "streams", "0"]);
            let stream = stream.as_dict().expect("stream");
            let n = |k: &str| get(stream, &[k, "packets"]).as_int().unwrap_or(0);
            (
                String::from_utf8_lossy(tag).into_owned(),
                n("stats"),
                n("stats_out"),
            )
        })
        .collect()
}

/// The call-ids `relay` holds now (ng `list`).
fn calls_of(relay: &mut Relay) -> Vec<String> {
    match relay.ng(&[("command", "list".into())]).dict.get("calls") {
        Some(Value::List(l)) => l
            .iter()
            .filter_map(|c| c.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// `calls` SIPp calls with RTP through Kamailio, whose rtpengine set is `relays`: while the
/// calls are up (each holds 4 s with audio from SIPp's pcap player, echoed back by the callee),
/// every relay holds a call whose two parties both sent to and received from it; at the end
/// Kamailio has deleted every call and the relays together managed them all. Returns each
/// relay's ng `statistics` totals `(managedsessions, relayedpackets)`.
fn calls_through_kamailio(name: &str, relays: &mut [Relay], calls: usize) -> Vec<(i64, i64)> {
    let work = work_dir(name);
    let (sip, uas) = (free_udp_port(), free_udp_port());
    let socks: Vec<String> = relays
        .iter()
        .map(|r| format!("udp:127.0.0.1:{}", r.ng.port()))
        .collect();
    let cfg = std::fs::read_to_string(here().join("kamailio.cfg"))
        .expect("kamailio.cfg")
        .replace("@SIP_PORT@", &sip.to_string())
        .replace("@NG_SOCKS@", &socks.join(" "))
        .replace("@UAS_PORT@", &uas.to_string());
    std::fs::write(work.join("kamailio.cfg"), cfg).expect("write cfg");
    let _kamailio = spawn(
        Command::new("kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&work)
            .arg("-f")
            .arg(work.join("kamailio.cfg")),
        &work.join("kamailio.log"),
    );
    // Up once it answers an OPTIONS (405 from the test config).
    let kamailio: SocketAddr = ([127, 0, 0, 1], sip).into();
    let options = format!(
        "OPTIONS sip:ping@127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-up\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: up\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = wait_answer(kamailio, options.as_bytes());
    assert!(
        answer.starts_with(b"SIP/2.0 405"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let mut callee = spawn(
        Command::new("sipp")
            .arg("-sf")
            .arg(here().join("uas.xml"))
            .args([
                "-rtp_echo",
                "-i",
                "127.0.0.1",
                "-nostdin",
                "-m",
                &calls.to_string(),
            ])
            .args(["-p", &uas.to_string(), "-mp", &free_udp_port().to_string()]),
        &work.join("uas.log"),
    );
    let mut caller = spawn(
        Command::new("sipp")
            .arg(format!("127.0.0.1:{sip}"))
            .arg("-sf")
            .arg(here().join("uac.xml"))
            .args([
                "-i",
                "127.0.0.1",
                "-nostdin",
                "-m",
                &calls.to_string(),
                "-r",
                "3",
                "-d",
                "4000",
            ])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-mp", &free_udp_port().to_string()]),
        &work.join("uac.log"),
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut both_ways: Vec<Option<Vec<(String, i64, i64)>>> = vec![None; relays.len()];
    while both_ways.iter().any(Option::is_none) && Instant::now() < deadline {
        for (relay, seen) in relays.iter_mut().zip(&mut both_ways) {
            if seen.is_some() {
                continue;
            }
            *seen = calls_of(relay)
                .iter()
                .map(|c| party_traffic(relay, c))
                .find(|parties| {
                    parties.len() == 2 && parties.iter().all(|(_, rx, tx)| *rx >= 10 && *tx >= 10)
                });
        }
    }
    for (i, seen) in both_ways.iter().enumerate() {
        let seen = seen
            .as_ref()
            .unwrap_or_else(|| panic!("relay {i} relayed no call's RTP both ways within 20 s"));
        eprintln!("relay {i}, per party (tag, packets in, packets out): {seen:?}");
    }

    let status = caller
        .wait_exit(Duration::from_secs(60))
        .expect("caller still running after 60 s");
    let log = |name: &str| std::fs::read_to_string(work.join(name)).unwrap_or_default();
    assert!(
        status.success(),
        "caller: {status}\n{}\n{}",
        log("uac.log"),
        log("kamailio.log")
    );
    let status = callee
        .wait_exit(Duration::from_secs(20))
        .expect("callee still running after 20 s");
    assert!(status.success(), "callee: {status}\n{}", log("uas.log"));

    // Kamailio deleted every call on BYE; the relays counted them as regular terminations.
    let totals: Vec<(i64, i64)> = relays
        .iter_mut()
        .map(|relay| {
            let stats = relay.ng(&[("command", "statistics".into())]);
            let total = |k: &str| {
                get(&stats.dict, &["statistics", "totalstatistics", k])
                    .as_int()
                    .unwrap_or(-1)
            };
            let current = get(
                &stats.dict,
                &["statistics", "currentstatistics", "sessionsown"],
            )
            .as_int();
            assert_eq!(current, Some(0), "{:?}", stats.dict);
            assert!(calls_of(relay).is_empty(), "{:?}", stats.dict);
            let managed = total("managedsessions");
            assert_eq!(
                total("regularterminatedsessions"),
                managed,
                "{:?}",
                stats.dict
            );
            assert!(
                total("relayedpackets") >= 2 * 100 * managed,
                "{:?}",
                stats.dict
            );
            (managed, total("relayedpackets"))
        })
        .collect();
    assert_eq!(
        totals.iter().map(|(m, _)| m).sum::<i64>(),
        calls as i64,
        "{totals:?}"
    );
    totals
}

#[test]
fn sipp_calls_through_kamailio_relay_rtp_both_ways() {
    calls_through_kamailio("kamailio", &mut [Relay::start(&[])], 3);
}

/// Two `dialplane media` in one rtpengine set, as rtpengine instances are scaled out: Kamailio
/// spreads the calls over both (by Call-ID hash), each relays media both ways for its calls.
#[test]
fn two_relays_in_one_set_share_the_calls() {
    let mut relays = [Relay::start(&[]), Relay::start(&[])];
    let totals = calls_through_kamailio("kamailio-pair", &mut relays, 4);
    eprintln!("(managed sessions, relayed packets) per relay: {totals:?}");
    assert!(
        totals.iter().all(|(managed, _)| *managed >= 1),
        "{totals:?}"
    );
}
