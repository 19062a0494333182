//! End to end with SIPp (Debian `sip-tester`) against the test UAS (`sip_uas`): REGISTER with a
//! digest challenge, OPTIONS, INVITE → 180 → 200 → ACK → BYE, INVITE then CANCEL (487), and
//! INVITE with 100rel → reliable 183 → PRACK → 200 → 200 → ACK → BYE (RFC 3262; with the 183
//! retransmitted until the PRACK, and 481 for a PRACK that matches nothing: UDP only), over UDP,
//! TCP and UDP on IPv6. Each SIPp run must exit 0 (every call successful), and the
//! UAS's counters must show what SIPp did. (Debian's SIPp is built without TLS: TLS is covered
//! by `tests/transport_tls.rs`, with this crate's stack as the client, and by
//! `tests/kamailio_tls.rs`, with Kamailio relaying SIPp's calls over TLS.)

#[path = "sipp/runner.rs"]
mod runner;
mod uas;

use runner::{CALLS, sipp};
use uas::Uas;

fn responses(uas: &mut Uas, method: &str, status: &str) -> f64 {
    uas.metric(
        "dialplane_uas_responses_total",
        &[("method", method), ("status", status)],
    )
}

/// Every scenario over one transport: `listen` is the UAS's flag, `t` SIPp's `-t`.
fn scenarios(listen: &str, bind: &str, name: &str, t: &str) {
    let calls = f64::from(CALLS);
    let mut uas = Uas::start(&[listen, bind, "--user", "alice:secret", "--md5-first"]);
    let target = uas.addr(name);

    sipp("register.xml", target, t);
    let reg = "dialplane_sip_registrations_total";
    assert_eq!(uas.metric(reg, &[("result", "challenged")]), calls);
    assert_eq!(uas.metric(reg, &[("result", "ok")]), calls);
    assert_eq!(
        uas.metric("dialplane_registrar_bindings", &[]),
        1.0,
        "one AOR, one contact"
    );

    sipp("options.xml", target, t);
    assert_eq!(responses(&mut uas, "OPTIONS", "200"), calls);

    sipp("invite.xml", target, t);
    assert_eq!(responses(&mut uas, "INVITE", "180"), calls);
    assert_eq!(responses(&mut uas, "INVITE", "200"), calls);
    assert_eq!(responses(&mut uas, "BYE", "200"), calls);
    uas.wait_metric("dialplane_uas_acks_total", &[], |v| v == calls);
    // Register: 2 requests a call; OPTIONS 1; INVITE, ACK, BYE 3.
    let received = uas.metric("dialplane_sip_received_total", &[("transport", name)]);
    assert_eq!(received, calls * 6.0);
    assert_eq!(uas.metric("dialplane_sip_dropped_total", &[]), 0.0);

    // CANCEL needs an INVITE that is still ringing.
    let mut slow = Uas::start(&[listen, bind, "--answer-delay-ms", "30000"]);
    sipp("cancel.xml", slow.addr(name), t);
    assert_eq!(responses(&mut slow, "CANCEL", "200"), calls);
    assert_eq!(responses(&mut slow, "INVITE", "487"), calls);
    assert_eq!(responses(&mut slow, "INVITE", "200"), 0.0);

    // Without --reliable-183, an INVITE that requires 100rel is refused (RFC 3262 §3).
    sipp("require_100rel.xml", slow.addr(name), t);
    assert_eq!(responses(&mut slow, "INVITE", "420"), calls);
    // The ACKs for the 487s and 420s matched their INVITE transactions: none reached the UAS.
    assert_eq!(slow.metric("dialplane_uas_acks_total", &[]), 0.0);

    // PRACK: the 200 to the INVITE waits for the PRACK of the reliable 183.
    let mut rel = Uas::start(&[listen, bind, "--reliable-183"]);
    sipp("prack.xml", rel.addr(name), t);
    let pracks = "dialplane_uas_pracks_total";
    assert_eq!(rel.metric(pracks, &[("result", "ok")]), calls);
    assert_eq!(rel.metric(pracks, &[("result", "unknown")]), 0.0);
    assert_eq!(responses(&mut rel, "PRACK", "200"), calls);
    // Each 183 is sent once plus its retransmissions (none expected on loopback, but allowed).
    let retransmits = rel.metric("dialplane_uas_reliable_retransmits_total", &[]);
    assert_eq!(responses(&mut rel, "INVITE", "183"), calls + retransmits);
    assert_eq!(responses(&mut rel, "INVITE", "180"), 0.0);
    assert_eq!(responses(&mut rel, "INVITE", "200"), calls);
    assert_eq!(responses(&mut rel, "BYE", "200"), calls);
    rel.wait_metric("dialplane_uas_acks_total", &[], |v| v == calls);

    // The 183 is retransmitted while no PRACK comes (SIPp waits 2 s: T1 = 0.5 s has passed at
    // least once), and a PRACK that matches no reliable provisional gets 481. Over UDP only:
    // SIPp absorbs retransmissions on UDP, and takes them for unexpected messages on TCP.
    if t != "u1" {
        return;
    }
    let mut rel = Uas::start(&[listen, bind, "--reliable-183"]);
    sipp("prack_checks.xml", rel.addr(name), t);
    assert_eq!(rel.metric(pracks, &[("result", "unknown")]), calls);
    assert_eq!(responses(&mut rel, "PRACK", "481"), calls);
    assert_eq!(rel.metric(pracks, &[("result", "ok")]), calls);
    let retransmits = rel.metric("dialplane_uas_reliable_retransmits_total", &[]);
    assert!(retransmits >= calls, "{retransmits} retransmissions");
    assert_eq!(responses(&mut rel, "INVITE", "183"), calls + retransmits);
    assert_eq!(responses(&mut rel, "BYE", "200"), calls);
}

#[test]
fn sipp_over_udp() {
    scenarios("--udp", "127.0.0.1:0", "UDP", "u1");
}

#[test]
fn sipp_over_tcp() {
    scenarios("--tcp", "127.0.0.1:0", "TCP", "t1");
}

#[test]
fn sipp_over_udp_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let mut uas = Uas::start(&["--udp", "[::1]:0"]);
    sipp("options.xml", uas.addr("UDP"), "u1");
    sipp("invite.xml", uas.addr("UDP"), "u1");
    assert_eq!(responses(&mut uas, "BYE", "200"), f64::from(CALLS));
}
