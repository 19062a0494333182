//! SRTP (SDES) checked against an independent implementation, Debian's libsrtp2, through
//! tests/srtp/libsrtp_filter.c (compiled here with `cc … -lsrtp2`):
//! - media::srtp and libsrtp produce the same SRTP/SRTCP bytes from the same packets and keys,
//!   and each unprotects what the other protects (both suites, across a sequence wrap);
//! - the relay (media driver) bridging an SRTP leg to a plain RTP leg: libsrtp-protected packets
//!   come out plain, plain packets come out as SRTP libsrtp accepts, tampered and replayed
//!   packets are dropped and counted.
//! - `dialplane serve` end to end, the test's own UDP sockets as the media of SIPp caller and
//!   callee, libsrtp as the SRTP phone: a plain caller dialling a carrier with `srtp = true`
//!   (offered `RTP/SAVP` with our key, answered with the callee's), and an `RTP/SAVP` caller
//!   (answered `RTP/SAVP` with our own key) dialling a plain SIP target. Media flows both ways
//!   through the relay, decrypted and encrypted at the SRTP leg; a tampered packet shows in
//!   `dialplane_media_rtp_dropped_total{reason="srtp_auth"}`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::serve::{CALLED, Serve, config, dial, serve_with_app_and, sip_target};
use common::sipp::{Run, Sipp};
use media::api::{CallId, Command as MediaCommand, EndpointSpec, Event, LegId, MediaControl};
use media::driver::{Media, MediaConfig};
use media::srtp::{MasterKey, Session, SrtpKeys, Suite};
use serde_json::json;

/// The libsrtp2 filter binary, built once per test run.
fn libsrtp_filter() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/srtp/libsrtp_filter.c");
        let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libsrtp_filter");
        let status = Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&bin)
            .arg(&src)
            .arg("-lsrtp2")
            .status()
            .expect("run cc");
        assert!(
            status.success(),
            "cc libsrtp_filter.c failed (libsrtp2-dev installed?)"
        );
        bin
    })
}

fn suite_arg(suite: Suite) -> &'static str {
    match suite {
        Suite::AesCm128HmacSha1_80 => "80",
        Suite::AesCm128HmacSha1_32 => "32",
    }
}

/// Run `packets` through libsrtp (`mode`: protect, unprotect, protect-rtcp, unprotect-rtcp);
/// `None` for a packet libsrtp refused.
fn libsrtp(mode: &str, key: &MasterKey, packets: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    let hex: String = key.inline().iter().map(|b| format!("{b:02x}")).collect();
    let mut guard = common::Guard(
        Command::new(libsrtp_filter())
            .args([mode, suite_arg(key.suite), &hex])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start libsrtp_filter"),
    );
    let child = &mut guard.0;
    let mut input = Vec::new();
    for p in packets {
        input.extend_from_slice(&(p.len() as u16).to_be_bytes());
        input.extend_from_slice(p);
    }
    let mut stdin = child.stdin.take().expect("stdin");
    // Written from a thread: the filter's output could fill the pipe before it reads all input.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read filter output");
    writer
        .join()
        .expect("writer thread")
        .expect("write filter input");
    assert!(child.wait().expect("wait filter").success());
    let mut records = Vec::new();
    let mut rest = &out[..];
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        records.push((n > 0).then(|| rest[2..2 + n].to_vec()));
        rest = &rest[2 + n..];
    }
    assert_eq!(records.len(), packets.len(), "one record per packet");
    records
}

fn master(suite: Suite, seed: u8) -> MasterKey {
    let mut inline = [0u8; 30];
    for (i, b) in inline.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8 * 7);
    }
    MasterKey::from_inline(suite, &inline).unwrap()
}

/// A PCMU packet of `ssrc` with a payload that differs per packet.
fn rtp_packet(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i as u16 ^ seq) as u8));
    p
}

/// 200 packets crossing the sequence wrap (so the ROC goes from 0 to 1).
fn rtp_stream(ssrc: u32) -> Vec<Vec<u8>> {
    (0..200u16)
        .map(|i| rtp_packet(ssrc, 65436u16.wrapping_add(i), u32::from(i) * 160))
        .collect()
}

/// A receiver report: header, SSRC, one report block.
fn rtcp_packet(n: u8) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7, 0x11, 0x22, 0x33, 0x44];
    p.extend((0..24).map(|i| i ^ n));
    p
}

fn ours_protect(session: &mut Session, packets: &[Vec<u8>], rtcp: bool) -> Vec<Vec<u8>> {
    packets
        .iter()
        .map(|p| {
            let mut buf = p.clone();
            buf.resize(p.len() + media::srtp::MAX_OVERHEAD, 0);
            let n = if rtcp {
                session.protect_rtcp(&mut buf, p.len())
            } else {
                session.protect_rtp(&mut buf, p.len())
            }
            .expect("protect");
            buf.truncate(n);
            buf
        })
        .collect()
}

fn ours_unprotect(session: &mut Session, packet: &[u8], rtcp: bool) -> Option<Vec<u8>> {
    let mut buf = packet.to_vec();
    let n = if rtcp {
        session.unprotect_rtcp(&mut buf)
    } else {
        session.unprotect_rtp(&mut buf)
    }
    .ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn media_srtp_and_libsrtp_agree_both_ways() {
    for suite in Suite::ALL {
        let (ours, theirs) = (master(suite, 1), master(suite, 2));
        // We send with `ours`, libsrtp's peer sends with `theirs`.
        let mut session = Session::new(ours, theirs);
        let plain = rtp_stream(0x1234_5678);
        let protected = ours_protect(&mut session, &plain, false);
        let by_libsrtp = libsrtp("protect", &ours, &plain);
        for (i, (a, b)) in protected.iter().zip(&by_libsrtp).enumerate() {
            assert_eq!(
                Some(a),
                b.as_ref(),
                "{suite:?}: SRTP packet {i} differs from libsrtp's"
            );
        }
        let back = libsrtp("unprotect", &ours, &protected);
        for (i, (p, b)) in plain.iter().zip(&back).enumerate() {
            assert_eq!(
                Some(p),
                b.as_ref(),
                "{suite:?}: libsrtp unprotect of packet {i}"
            );
        }
        // libsrtp → us, then a tampered and a replayed packet.
        let from_peer = libsrtp("protect", &theirs, &plain);
        for (i, (p, s)) in plain.iter().zip(&from_peer).enumerate() {
            let s = s.as_ref().expect("libsrtp protects");
            assert_eq!(
                ours_unprotect(&mut session, s, false).as_ref(),
                Some(p),
                "packet {i}"
            );
        }
        let mut tampered = libsrtp("protect", &theirs, &[rtp_packet(0x1234_5678, 200, 0)])
            .remove(0)
            .unwrap();
        tampered[40] ^= 0x01;
        assert_eq!(ours_unprotect(&mut session, &tampered, false), None);
        let replayed = from_peer.last().unwrap().as_ref().unwrap();
        assert_eq!(ours_unprotect(&mut session, replayed, false), None);

        // SRTCP both ways. Not compared byte for byte: libsrtp numbers its first SRTCP packet
        // 1, RFC 3711 §3.4 (and we) 0.
        let reports: Vec<Vec<u8>> = (0..5).map(rtcp_packet).collect();
        let protected = ours_protect(&mut session, &reports, true);
        let back = libsrtp("unprotect-rtcp", &ours, &protected);
        assert_eq!(back, reports.iter().cloned().map(Some).collect::<Vec<_>>());
        for (r, s) in reports
            .iter()
            .zip(libsrtp("protect-rtcp", &theirs, &reports))
        {
            assert_eq!(
                ours_unprotect(&mut session, &s.unwrap(), true).as_ref(),
                Some(r)
            );
        }
        // libsrtp refuses a packet of ours with a flipped bit too (it checks what we check).
        let mut bad = protected[0].clone();
        bad[10] ^= 0x80;
        assert_eq!(libsrtp("unprotect-rtcp", &ours, &[bad]), vec![None]);
    }
}

/// Receive one datagram within the socket's read timeout.
fn recv(sock: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| buf[..n].to_vec())
}

fn create(media: &Media, call: &CallId, leg: u32, spec: EndpointSpec) -> SocketAddr {
    let answer = media
        .request(MediaCommand::CreateEndpoint {
            call_id: call.clone(),
            leg: LegId(leg),
            spec,
        })
        .expect("create endpoint");
    match answer[..] {
        [Event::EndpointCreated { local, .. }] => local,
        ref other => panic!("{other:?}"),
    }
}

fn dropped(media: &Media, reason: &str) -> u64 {
    media
        .stats()
        .expect("stats")
        .iter()
        .map(|s| s.dropped(reason))
        .sum()
}

#[test]
fn relay_bridges_srtp_leg_to_plain_leg() {
    let suite = Suite::AesCm128HmacSha1_80;
    // The SRTP phone's key (ingress at the relay) and the relay's key for it (egress).
    let (phone_key, relay_key) = (master(suite, 3), master(suite, 4));
    let (min, max) = common::port_range();
    let (media, _events) = Media::start(MediaConfig {
        port_min: min,
        port_max: max,
        num_threads: 1,
        ..MediaConfig::default()
    })
    .expect("start media");
    let srtp_phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let plain_phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&srtp_phone, &plain_phone] {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let call = CallId("srtp-bridge@test".into());
    let srtp_leg = create(
        &media,
        &call,
        0,
        EndpointSpec {
            sdp_address: Some(srtp_phone.local_addr().unwrap()),
            srtp: Some(Box::new(SrtpKeys {
                egress: relay_key,
                ingress: phone_key,
            })),
            ..EndpointSpec::default()
        },
    );
    let plain_leg = create(
        &media,
        &call,
        1,
        EndpointSpec {
            sdp_address: Some(plain_phone.local_addr().unwrap()),
            ..EndpointSpec::default()
        },
    );
    media
        .request(MediaCommand::Bridge {
            call_id: call.clone(),
            a: LegId(0),
            b: LegId(1),
        })
        .expect("bridge");

    // SRTP phone → relay → plain phone: what libsrtp protected arrives decrypted.
    let plain = rtp_stream(0x0bad_cafe);
    let sent = libsrtp("protect", &phone_key, &plain[..20]);
    let mut got = Vec::new();
    for s in &sent {
        srtp_phone.send_to(s.as_ref().unwrap(), srtp_leg).unwrap();
        got.extend(recv(&plain_phone));
    }
    assert_eq!(got.len(), 20, "every authenticated packet relayed");
    for (g, p) in got.iter().zip(&plain) {
        // The relay rewrites SSRC/seq/ts; the payload is the plain one.
        assert_eq!(g[12..], p[12..]);
        assert_eq!(g.len(), p.len());
    }
    // Tampered and replayed packets are dropped and counted.
    let mut tampered = libsrtp("protect", &phone_key, &plain[20..21])
        .remove(0)
        .unwrap();
    tampered[30] ^= 0x04;
    srtp_phone.send_to(&tampered, srtp_leg).unwrap();
    srtp_phone
        .send_to(sent[5].as_ref().unwrap(), srtp_leg)
        .unwrap();
    assert_eq!(
        recv(&plain_phone),
        None,
        "a tampered or replayed packet is not relayed"
    );
    let deadline = Instant::now() + common::WAIT;
    while (dropped(&media, "srtp_auth"), dropped(&media, "srtp_replay")) != (1, 1) {
        assert!(Instant::now() < deadline, "drops not counted");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Plain phone → relay → SRTP phone: libsrtp accepts what the relay protected.
    let mut protected = Vec::new();
    for p in &rtp_stream(0x5eed_5eed)[..20] {
        plain_phone.send_to(p, plain_leg).unwrap();
        if let Some(s) = recv(&srtp_phone).filter(|s| !media::rtp::is_rtcp(s)) {
            protected.push(s);
        }
    }
    assert_eq!(protected.len(), 20);
    let back = libsrtp("unprotect", &relay_key, &protected);
    for (b, p) in back.iter().zip(&rtp_stream(0x5eed_5eed)) {
        let b = b.as_ref().expect("libsrtp authenticates the relay's SRTP");
        assert_eq!(b[12..], p[12..], "payload decrypted by libsrtp");
    }
}

/// A scenario of tests/srtp/.
fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/srtp/{name}.xml"))
}

/// SIPp `-key` arguments for the SDP of the caller/callee scenarios: media on `port`, SRTP with
/// `key` (crypto tag 1) or plain RTP.
fn sdp_keys(port: u16, key: Option<&MasterKey>) -> Vec<String> {
    let (proto, extra) = match key {
        Some(k) => (
            "RTP/SAVP",
            format!(
                "a=crypto:1 {} inline:{}",
                k.suite.name(),
                STANDARD.encode(k.inline())
            ),
        ),
        None => ("RTP/AVP", "a=ptime:20".to_string()),
    };
    [
        "-key",
        "rtp_port",
        &port.to_string(),
        "-key",
        "proto",
        proto,
        "-key",
        "sdp_extra",
        &extra,
    ]
    .map(str::to_string)
    .to_vec()
}

/// From a SIPp log: the port and protocol of its "<prefix> m=audio PORT PROTO" line and the
/// key of its "CRYPTO a=crypto:…" line, once both are there.
fn logged_media(sipp: &Sipp, prefix: &str) -> (u16, String, Option<MasterKey>) {
    sipp.wait_log(prefix, common::WAIT, |l| l.starts_with(prefix));
    let log = sipp.log();
    let m = log.iter().find_map(|l| l.strip_prefix(prefix)).unwrap();
    let mut it = m
        .trim()
        .strip_prefix("m=audio ")
        .expect("m= line")
        .split(' ');
    let port = it.next().unwrap().parse().expect("port");
    let proto = it.next().unwrap().to_string();
    let key = log
        .iter()
        .find_map(|l| l.strip_prefix("CRYPTO a=crypto:"))
        .and_then(|c| {
            let mut f = c.split_whitespace().skip(1);
            let suite = Suite::from_name(f.next()?)?;
            let inline = f.next()?.strip_prefix("inline:")?;
            MasterKey::from_inline(suite, &STANDARD.decode(inline).ok()?)
        });
    (port, proto, key)
}

fn srtp_auth_drops(serve: &Serve) -> f64 {
    serve
        .metrics()
        .lines()
        .find(|l| l.starts_with("dialplane_media_rtp_dropped_total{") && l.contains("srtp_auth"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

/// One SRTP phone and one plain phone, each a socket of the test, bridged by the relay.
struct Phones {
    srtp: UdpSocket,
    /// The relay's address for the SRTP phone, what the phone sends with, what the relay sends
    /// it with.
    srtp_relay: SocketAddr,
    phone_key: MasterKey,
    relay_key: MasterKey,
    plain: UdpSocket,
    plain_relay: SocketAddr,
}

impl Phones {
    /// Media both ways, checked by libsrtp on the SRTP side; a tampered packet dropped.
    fn check(&self, serve: &Serve) {
        let from_plain = rtp_stream(0x00c0_ffee);
        let mut protected = Vec::new();
        // The relay bridges the legs as the answer is handled, which may be just after the test
        // saw it: the first packet goes again (up to 20 times) until it is relayed.
        for _ in 0..20 {
            self.plain
                .send_to(&from_plain[0], self.plain_relay)
                .unwrap();
            protected.extend(recv(&self.srtp).filter(|s| !media::rtp::is_rtcp(s)));
            if !protected.is_empty() {
                break;
            }
        }
        for p in &from_plain[1..30] {
            self.plain.send_to(p, self.plain_relay).unwrap();
            protected.extend(recv(&self.srtp).filter(|s| !media::rtp::is_rtcp(s)));
        }
        assert_eq!(
            protected.len(),
            30,
            "plain → SRTP relayed\n{}",
            serve.log_tail()
        );
        for (b, p) in libsrtp("unprotect", &self.relay_key, &protected)
            .iter()
            .zip(&from_plain)
        {
            let b = b.as_ref().expect("libsrtp authenticates the relay's SRTP");
            assert_eq!(b[12..], p[12..], "libsrtp decrypts the caller's audio");
        }
        let from_srtp = rtp_stream(0x0dec_0de5);
        let sent = libsrtp("protect", &self.phone_key, &from_srtp[..31]);
        let mut plain = Vec::new();
        for s in &sent[..30] {
            self.srtp
                .send_to(s.as_ref().unwrap(), self.srtp_relay)
                .unwrap();
            plain.extend(recv(&self.plain).filter(|s| !media::rtp::is_rtcp(s)));
        }
        assert_eq!(
            plain.len(),
            30,
            "SRTP → plain relayed\n{}",
            serve.log_tail()
        );
        for (g, p) in plain.iter().zip(&from_srtp) {
            assert_eq!(g[12..], p[12..], "the relay decrypts libsrtp's SRTP");
        }
        let before = srtp_auth_drops(serve);
        let mut tampered = sent[30].clone().unwrap();
        tampered[20] ^= 0x10;
        self.srtp.send_to(&tampered, self.srtp_relay).unwrap();
        assert_eq!(recv(&self.plain), None, "a tampered packet is not relayed");
        let deadline = Instant::now() + common::WAIT;
        while srtp_auth_drops(serve) < before + 1.0 {
            assert!(Instant::now() < deadline, "srtp_auth drop not in /metrics");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn phone_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn port(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

fn relay(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

#[test]
fn plain_caller_dials_srtp_carrier() {
    let (caller_media, callee_media) = (phone_socket(), phone_socket());
    let callee_key = master(Suite::AesCm128HmacSha1_80, 9);
    let callee_port = common::free_port();
    let keys = sdp_keys(port(&callee_media), Some(&callee_key));
    let mut callee = Sipp::callee_on(
        "srtp-carrier",
        callee_port,
        Run {
            scenario: &scenario("callee"),
            calls: 1,
            pause_ms: 0,
            extra: &keys.iter().map(String::as_str).collect::<Vec<_>>(),
        },
    );
    let cfg = config(
        "srtp-carrier",
        &format!(
            "[[carriers]]\nname = \"acme\"\ncountry_code = \"1\"\nnational_prefix = \"1\"\n\
             probe_interval_s = 0\nsrtp = true\ngateways = [\"sip:127.0.0.1:{callee_port}\"]\n"
        ),
    );
    let app = dial(
        &[json!({"type": "phone", "number": "16175550100", "trunk": "acme"})],
        json!({}),
    );
    let (_hooks, serve) =
        serve_with_app_and("srtp-carrier", app, &["--config", cfg.to_str().unwrap()]);
    let mut extra = vec!["-s".to_string(), CALLED.to_string()];
    extra.extend(sdp_keys(port(&caller_media), None));
    let mut caller = Sipp::caller(
        "srtp-carrier-caller",
        serve.sip,
        Run {
            scenario: &scenario("caller"),
            calls: 1,
            pause_ms: 4000,
            extra: &extra.iter().map(String::as_str).collect::<Vec<_>>(),
        },
    );
    let (fork_port, offered, relay_key) = logged_media(&callee, "OFFER ");
    assert_eq!(offered, "RTP/SAVP", "the carrier is offered SRTP");
    let relay_key = relay_key.expect("our offer has a crypto line");
    let (caller_port, answered, none) = logged_media(&caller, "ANSWER ");
    assert_eq!(
        (answered.as_str(), none),
        ("RTP/AVP", None),
        "the caller stays plain"
    );
    Phones {
        srtp: callee_media,
        srtp_relay: relay(fork_port),
        phone_key: callee_key,
        relay_key,
        plain: caller_media,
        plain_relay: relay(caller_port),
    }
    .check(&serve);
    serve.finish(&mut [&mut caller, &mut callee]);
}

#[test]
fn srtp_caller_dials_plain_target() {
    let (caller_media, callee_media) = (phone_socket(), phone_socket());
    let caller_key = master(Suite::AesCm128HmacSha1_80, 11);
    let keys = sdp_keys(port(&callee_media), None);
    let mut callee = Sipp::callee(
        "srtp-plain-callee",
        Run {
            scenario: &scenario("callee"),
            calls: 1,
            pause_ms: 0,
            extra: &keys.iter().map(String::as_str).collect::<Vec<_>>(),
        },
    );
    let app = dial(&[sip_target(&callee.uri("bob"))], json!({}));
    let (_hooks, serve) = serve_with_app_and("srtp-caller", app, &[]);
    let mut extra = vec!["-s".to_string(), CALLED.to_string()];
    extra.extend(sdp_keys(port(&caller_media), Some(&caller_key)));
    let mut caller = Sipp::caller(
        "srtp-caller",
        serve.sip,
        Run {
            scenario: &scenario("caller"),
            calls: 1,
            pause_ms: 4000,
            extra: &extra.iter().map(String::as_str).collect::<Vec<_>>(),
        },
    );
    let (caller_port, answered, relay_key) = logged_media(&caller, "ANSWER ");
    assert_eq!(answered, "RTP/SAVP", "an SRTP offer is answered with SRTP");
    let relay_key = relay_key.expect("our answer has a crypto line");
    assert_ne!(relay_key, caller_key, "our own key, not the caller's");
    let (fork_port, offered, none) = logged_media(&callee, "OFFER ");
    assert_eq!(
        (offered.as_str(), none),
        ("RTP/AVP", None),
        "the SIP target is offered plain RTP"
    );
    Phones {
        srtp: caller_media,
        srtp_relay: relay(caller_port),
        phone_key: caller_key,
        relay_key,
        plain: callee_media,
        plain_relay: relay(fork_port),
    }
    .check(&serve);
    serve.finish(&mut [&mut caller, &mut callee]);
}
