//! The invariants the `verbs` and `verbs_json` targets check on whatever parses: a dial has
//! 1..=MAX_TARGETS distinct targets and a timeout, hook URLs have no whitespace or control
//! characters, header names are non-empty tokens and values have no CR/LF (they go into SIP
//! messages as they are), and a target's own headers win over the dial's.

use dialplane_signaling::verbs::{MAX_TARGETS, SipHeaders, TargetKind, Verb};

fn check_headers(h: &SipHeaders) {
    for (name, value) in &h.0 {
        assert!(!name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == ':'));
        assert!(!value.contains(['\r', '\n']));
    }
}

pub fn check_app(app: &[Verb]) {
    for verb in app {
        assert!(!verb.name().is_empty());
        for (path, hook) in verb.hooks() {
            assert!(!path.is_empty());
            assert!(!hook.url.is_empty());
            assert!(
                !hook
                    .url
                    .contains(|c: char| c.is_whitespace() || c.is_control())
            );
        }
        match verb {
            Verb::Dial(d) => {
                assert!((1..=MAX_TARGETS).contains(&d.target.len()));
                assert!(d.timeout >= 1 && d.time_limit != Some(0));
                check_headers(&d.headers);
                for (i, t) in d.target.iter().enumerate() {
                    assert!(d.target[..i].iter().all(|u| u.kind != t.kind));
                    if let TargetKind::User { name } = &t.kind {
                        assert!(!name.is_empty());
                    }
                    check_headers(&t.headers);
                    // The target's own headers win over the dial's.
                    let merged = d.headers_for(t);
                    for (n, v) in &t.headers.0 {
                        assert!(merged.contains(&(n.clone(), v.clone())));
                    }
                }
            }
            Verb::Hangup(h) => check_headers(&h.headers),
            _ => {}
        }
    }
}
