//! What a reload (SIGHUP) may change while `serve` runs, and what it changed
//!
//! Carriers, routes, Teams, the registrar's users and settings, `allow_from`, `sip.rate_limit`,
//! the app, the AMD timers and `[speech]` take effect for new calls. Sockets and threads are not
//! rebound: the rest of `[sip]`, `[media]`, `[http]`, `[log]` and `[redis]` keep their running
//! values, and a change there is reported as needing a restart.

use super::Config;

/// A new configuration set against the running one
#[derive(Debug)]
pub struct Reload {
    /// What to run with from now on: the new reloadable sections, the running others.
    pub config: Config,
    /// What changes, one phrase per section (names and counts: no numbers, URLs or secrets).
    pub changed: Vec<String>,
    /// Keys whose change needs a restart; their running values are kept.
    pub needs_restart: Vec<&'static str>,
}

impl Config {
    /// Takes `new`'s reloadable sections over this (running) configuration
    pub fn reload(&self, mut new: Config) -> Reload {
        let mut needs_restart = Vec::new();
        // `sip.rate_limit` is reloadable; the rest of [sip] is bound into the transports.
        let rate_limit = new.sip.rate_limit;
        new.sip.rate_limit = self.sip.rate_limit;
        let sections = [
            ("sip", new.sip != self.sip),
            ("media", new.media != self.media),
            ("http", new.http != self.http),
            ("log", new.log != self.log),
            ("redis", new.redis != self.redis),
        ];
        for (key, differs) in sections {
            if differs {
                needs_restart.push(key);
            }
        }
        new.sip = self.sip.clone();
        new.sip.rate_limit = rate_limit;
        new.media = self.media.clone();
        new.http = self.http.clone();
        new.log = self.log.clone();
        new.redis = self.redis.clone();
        let changed = self.changes(&new);
        Reload {
            config: new,
            changed,
            needs_restart,
        }
    }

    fn changes(&self, new: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let carriers = diff(&self.carriers, &new.carriers, |c| c.name.clone());
        if let Some(d) = carriers.named("carriers") {
            out.push(d);
        }
        // Route patterns are phone numbers: counted, not logged.
        let routes = diff(&self.routes, &new.routes, |r| r.to.to_string());
        if let Some(d) = routes.counted("routes") {
            out.push(d);
        }
        let (old_r, new_r) = (&self.registrar, &new.registrar);
        let users = diff(&old_r.users, &new_r.users, |u| u.name.clone());
        if let Some(d) = users.named("registrar.users") {
            out.push(d);
        }
        let mut old_rest = old_r.clone();
        old_rest.users.clone_from(&new_r.users);
        if old_rest != *new_r {
            out.push("registrar: settings changed".into());
        }
        if self.security != new.security {
            out.push(format!(
                "allow_from: {} networks (was {})",
                new.security.allow_from.len(),
                self.security.allow_from.len()
            ));
        }
        if self.sip.rate_limit != new.sip.rate_limit {
            out.push(format!(
                "sip.rate_limit: {} (was {})",
                new.sip.rate_limit, self.sip.rate_limit
            ));
        }
        for (section, differs) in [
            ("teams", self.teams != new.teams),
            ("app", self.app != new.app),
            ("amd", self.amd != new.amd),
            ("speech", self.speech != new.speech),
        ] {
            if differs {
                out.push(format!("{section}: changed"));
            }
        }
        out
    }
}

/// Entries of a list by key: added, removed, and present in both but different.
struct Diff {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
}

fn diff<T: PartialEq>(old: &[T], new: &[T], key: impl Fn(&T) -> String) -> Diff {
    let mut d = Diff {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for n in new {
        match old.iter().find(|o| key(o) == key(n)) {
            None => d.added.push(key(n)),
            Some(o) if o != n => d.changed.push(key(n)),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| key(n) == key(o)) {
            d.removed.push(key(o));
        }
    }
    d
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `carriers: added b; removed a; changed c`
    fn named(&self, what: &str) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let parts: Vec<String> = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(verb, names)| format!("{verb} {}", names.join(", ")))
        .collect();
        Some(format!("{what}: {}", parts.join("; ")))
    }

    /// `routes: 1 added, 0 removed, 2 changed`
    fn counted(&self, what: &str) -> Option<String> {
        (!self.is_empty()).then(|| {
            format!(
                "{what}: {} added, {} removed, {} changed",
                self.added.len(),
                self.removed.len(),
                self.changed.len()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::from_toml(text, "t.toml").unwrap()
    }

    const BASE: &str = "[[carriers]]\nname = \"a\"\ngateways = [\"sip:10.0.0.1\"]\n\
        [[carriers]]\nname = \"b\"\ngateways = [\"sip:10.0.0.2\"]\n\
        [[routes]]\nto = \"+1555\"\napp_url = \"http://h/a\"\n\
        [registrar]\ndomain = \"d.example.com\"\n\
        users = [{ name = \"alice\", password = \"p1\" }, { name = \"bob\", password = \"p2\" }]\n";

    #[test]
    fn nothing_changed() {
        let r = parse(BASE).reload(parse(BASE));
        assert!(r.changed.is_empty() && r.needs_restart.is_empty(), "{r:?}");
        assert_eq!(r.config, parse(BASE));
    }

    #[test]
    fn reloadable_changes_are_taken_and_named() {
        let new = "[[carriers]]\nname = \"a\"\ngateways = [\"sip:10.0.0.9\"]\n\
            [[carriers]]\nname = \"c\"\ngateways = [\"sip:10.0.0.3\"]\n\
            [[routes]]\nto = \"+1555\"\napp_url = \"http://h/b\"\n\
            [[routes]]\nto = \"+1666\"\napp_url = \"http://h/c\"\n\
            [registrar]\ndomain = \"d.example.com\"\n\
            users = [{ name = \"alice\", password = \"p9\" }, { name = \"carol\", password = \"p3\" }]\n\
            [security]\nallow_from = [\"10.0.0.0/8\", \"192.0.2.0/24\"]\n\
            [sip]\nrate_limit = 10\n";
        let r = parse(BASE).reload(parse(new));
        assert_eq!(r.config, parse(new));
        assert!(r.needs_restart.is_empty(), "{r:?}");
        assert_eq!(
            r.changed,
            [
                "carriers: added c; removed b; changed a",
                "routes: 1 added, 0 removed, 1 changed",
                "registrar.users: added carol; removed bob; changed alice",
                "allow_from: 2 networks (was 1)",
                "sip.rate_limit: 10 (was 5000)",
            ]
        );
        assert!(!format!("{:?}", r.changed).contains("p9"));
    }

    #[test]
    fn socket_sections_keep_their_running_values() {
        let old = parse(BASE);
        let new = parse(&format!(
            "{BASE}[sip]\nlisten = [\"udp:127.0.0.1:5070\"]\nrate_limit = 7\n\
             [media]\nport_min = 30000\nport_max = 30100\n[http]\nlisten = \"127.0.0.1:9\"\n\
             [log]\nlevel = \"debug\"\n"
        ));
        let r = old.reload(new);
        assert_eq!(r.needs_restart, ["sip", "media", "http", "log"]);
        assert_eq!(r.config.sip.listen, old.sip.listen);
        assert_eq!(
            r.config.sip.rate_limit,
            crate::config::RateLimit::per_second(7)
        );
        assert_eq!(r.config.media, old.media);
        assert_eq!(r.config.http, old.http);
        assert_eq!(r.config.log, old.log);
        assert_eq!(r.changed, ["sip.rate_limit: 7 (was 5000)"]);
    }
}
