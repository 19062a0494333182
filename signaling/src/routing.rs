//! Where a call goes: dial targets of type `phone` and `teams` turned into request URIs, and
//! called numbers matched to `[[routes]]`
//!
//! Pure functions of the configuration; the dial verb calls them per target.

use crate::config::{CarrierConfig, Config, RouteConfig};
use crate::message::SipUri;

/// The header naming the Teams tenant on INVITEs to Microsoft's proxy
pub const TEAMS_TENANT_HEADER: &str = "X-MS-Teams-Tenant-FQDN";

/// Why a target could not be routed
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The number is not a phone number, or cannot be made E.164 with the carrier's rules.
    #[error("{number:?} is not a valid phone number: {reason}")]
    BadNumber {
        /// The number as given.
        number: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The target named a trunk no carrier has.
    #[error("no carrier named {0:?}")]
    UnknownTrunk(String),
    /// The named carrier (or, without a name, every carrier) has no gateway.
    #[error("no carrier with a gateway{}", .0.as_deref().map(|n| format!(" named {n:?}")).unwrap_or_default())]
    NoGateway(Option<String>),
    /// A `teams` target, but `[teams] fqdn` is not set.
    #[error("Microsoft Teams is not configured ([teams] fqdn)")]
    TeamsNotConfigured,
    /// A tenant that is not a host name.
    #[error("bad Teams tenant {0:?}")]
    BadTenant(String),
}

/// A phone target resolved to a carrier
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneRoute<'c> {
    /// The carrier the call goes through (its credentials answer challenges).
    pub carrier: &'c CarrierConfig,
    /// The carrier's first gateway with the E.164 number (after the tech prefix) as user part.
    pub request_uri: SipUri,
    /// The number in E.164.
    pub number: String,
}

/// A Teams target: where the INVITE goes and the tenant header it carries
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsRoute {
    /// Microsoft's proxy with the number as user part (and `opaque=app:voicemail`).
    pub request_uri: SipUri,
    /// The value of [`TEAMS_TENANT_HEADER`].
    pub tenant_fqdn: String,
}

impl Config {
    /// Routes a `phone` target: the named `trunk`, or else the first carrier with a gateway;
    /// the number normalised to E.164 with that carrier's rules
    pub fn resolve_phone(
        &self,
        number: &str,
        trunk: Option<&str>,
    ) -> Result<PhoneRoute<'_>, RouteError> {
        let carrier = match trunk {
            Some(name) => self
                .carriers
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| RouteError::UnknownTrunk(name.to_string()))?,
            None => self
                .carriers
                .iter()
                .find(|c| !c.gateways.is_empty())
                .ok_or(RouteError::NoGateway(None))?,
        };
        let gateway = carrier
            .gateways
            .first()
            .ok_or_else(|| RouteError::NoGateway(Some(carrier.name.clone())))?;
        let e164 = carrier.e164(number)?;
        let mut request_uri = gateway.clone();
        request_uri.user = Some(carrier.request_user(&e164));
        Ok(PhoneRoute {
            carrier,
            request_uri,
            number: e164,
        })
    }

    /// Routes a `teams` target: `tenant` defaults to `[teams] fqdn`; `voicemail` dials the
    /// user's voicemail (`;opaque=app:voicemail` on the request URI)
    pub fn teams_target(
        &self,
        number: &str,
        tenant: Option<&str>,
        voicemail: bool,
    ) -> Result<TeamsRoute, RouteError> {
        let teams = &self.teams;
        if teams.fqdn.is_empty() {
            return Err(RouteError::TeamsNotConfigured);
        }
        let tenant = tenant.unwrap_or(&teams.fqdn);
        if tenant.is_empty()
            || !tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(RouteError::BadTenant(tenant.to_string()));
        }
        // Teams numbers are E.164 already; only separators are tolerated.
        let digits = strip_separators(number);
        let e164 = match digits.strip_prefix('+') {
            Some(rest) => check_e164(number, rest)?,
            None => {
                return Err(bad(number, "a Teams number must start with +"));
            }
        };
        let mut request_uri = teams.gateway.clone();
        request_uri.user = Some(e164);
        if voicemail {
            request_uri
                .params
                .push(crate::message::Param::new("opaque", Some("app:voicemail")));
        }
        Ok(TeamsRoute {
            request_uri,
            tenant_fqdn: tenant.to_string(),
        })
    }

    /// The `[[routes]]` entry for a called number: an exact match beats any prefix, the
    /// longest prefix beats shorter ones, and among equals the first listed wins
    pub fn route_for(&self, called: &str) -> Option<&RouteConfig> {
        let mut best: Option<(usize, &RouteConfig)> = None;
        for r in &self.routes {
            if let Some(rank) = r.to.rank(called)
                && best.is_none_or(|(b, _)| rank > b)
            {
                best = Some((rank, r));
            }
        }
        best.map(|(_, r)| r)
    }
}

impl CarrierConfig {
    /// `number` in E.164 (`+` and 3 to 15 digits) by this carrier's rules: `+…` as is, the
    /// international prefix read as `+`, anything else national (trunk prefix stripped,
    /// country code added). Spaces, `-`, `.`, `(` and `)` are ignored.
    pub fn e164(&self, number: &str) -> Result<String, RouteError> {
        let digits = strip_separators(number);
        if let Some(rest) = digits.strip_prefix('+') {
            return check_e164(number, rest);
        }
        if let Some(rest) = self
            .international_prefix
            .as_deref()
            .and_then(|p| digits.strip_prefix(p))
        {
            return check_e164(number, rest);
        }
        let Some(cc) = &self.country_code else {
            return Err(bad(
                number,
                "not E.164 and the carrier has no country_code for national numbers",
            ));
        };
        let national = self
            .national_prefix
            .as_deref()
            .and_then(|p| digits.strip_prefix(p))
            .unwrap_or(&digits);
        check_e164(number, &format!("{cc}{national}"))
    }

    /// The From user of a call to this carrier: the caller's number in E.164 when these rules
    /// can make it so (else as it came), after `callerid_prefix`.
    pub fn caller_id(&self, user: &str) -> String {
        let number = self.e164(user).unwrap_or_else(|_| user.to_string());
        match &self.callerid_prefix {
            Some(p) => format!("{}{number}", escape_user(p)),
            None => number,
        }
    }

    /// The Request-URI user part for `number` (E.164): after `tech_prefix`.
    pub fn request_user(&self, number: &str) -> String {
        match &self.tech_prefix {
            Some(p) => format!("{}{number}", escape_user(p)),
            None => number.to_string(),
        }
    }
}

/// `s` as a SIP URI user part (RFC 3261 §25.1): what is not unreserved or user-unreserved is
/// `%XX`-escaped, e.g. the `#` of a tech prefix.
fn escape_user(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn strip_separators(number: &str) -> String {
    number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect()
}

/// `+digits` when `digits` is 3 to 15 decimal digits not starting with 0.
fn check_e164(number: &str, digits: &str) -> Result<String, RouteError> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(number, "only digits may follow the +"));
    }
    if !(3..=15).contains(&digits.len()) {
        return Err(bad(number, "E.164 numbers have 3 to 15 digits"));
    }
    if digits.starts_with('0') {
        return Err(bad(number, "country codes do not start with 0"));
    }
    Ok(format!("+{digits}"))
}

fn bad(number: &str, reason: &'static str) -> RouteError {
    RouteError::BadNumber {
        number: number.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NumberPattern;

    const CARRIERS: &str = "\
        [[carriers]]\nname = \"inbound-only\"\ninbound = [\"192.0.2.0/24\"]\n\
        [[carriers]]\nname = \"acme\"\n\
        gateways = [\"sip:gw1.acme.net:5060;transport=tcp\", \"sip:gw2.acme.net\"]\n\
        country_code = \"1\"\nnational_prefix = \"1\"\ninternational_prefix = \"011\"\n\
        [[carriers]]\nname = \"euro\"\ngateways = [\"sips:[2001:db8::1]:5061\"]\n\
        country_code = \"49\"\nnational_prefix = \"0\"\ninternational_prefix = \"00\"\n\
        [[carriers]]\nname = \"plain\"\ngateways = [\"sip:198.51.100.9\"]\n";

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!("{CARRIERS}{extra}"), "test").unwrap()
    }

    #[test]
    fn phone_goes_to_the_first_carrier_with_a_gateway() {
        let c = config("");
        let r = c.resolve_phone("+15083084809", None).unwrap();
        assert_eq!(r.carrier.name, "acme");
        assert_eq!(
            r.request_uri.to_string(),
            "sip:+15083084809@gw1.acme.net:5060;transport=tcp"
        );
        // National forms, NANP style.
        for n in [
            "5083084809",
            "15083084809",
            "(508) 308-4809",
            "011 1 508 308 4809",
        ] {
            let r = c.resolve_phone(n, None).unwrap();
            assert_eq!(r.request_uri.user.as_deref(), Some("+15083084809"), "{n}");
        }
    }

    #[test]
    fn named_trunks_and_their_rules() {
        let c = config("");
        let r = c.resolve_phone("030 1234567", Some("euro")).unwrap();
        assert_eq!(r.carrier.name, "euro");
        assert_eq!(
            r.request_uri.to_string(),
            "sips:+49301234567@[2001:db8::1]:5061"
        );
        let r = c.resolve_phone("0044 20 7946 0000", Some("euro")).unwrap();
        assert_eq!(r.request_uri.user.as_deref(), Some("+442079460000"));
        let r = c.resolve_phone("+442079460000", Some("plain")).unwrap();
        assert_eq!(r.request_uri.to_string(), "sip:+442079460000@198.51.100.9");
        assert!(matches!(
            c.resolve_phone("2079460000", Some("plain")),
            Err(RouteError::BadNumber { .. })
        ));
        assert_eq!(
            c.resolve_phone("+15083084809", Some("nope")),
            Err(RouteError::UnknownTrunk("nope".into()))
        );
        assert_eq!(
            c.resolve_phone("+15083084809", Some("inbound-only")),
            Err(RouteError::NoGateway(Some("inbound-only".into())))
        );
    }

    #[test]
    fn tech_prefix_and_caller_id_rules() {
        let c = config(
            "[[carriers]]\nname = \"tp\"\ngateways = [\"sip:192.0.2.7\"]\n\
             tech_prefix = \"1234#\"\ncallerid_prefix = \"99\"\ncountry_code = \"44\"\n\
             national_prefix = \"0\"\n",
        );
        let r = c.resolve_phone("020 7946 0000", Some("tp")).unwrap();
        // `#` is not allowed raw in a user part: escaped.
        assert_eq!(
            r.request_uri.to_string(),
            "sip:1234%23+442079460000@192.0.2.7"
        );
        assert_eq!(r.number, "+442079460000");
        let tp = &c.carriers[4];
        assert_eq!(tp.caller_id("07700 900123"), "99+447700900123");
        // Not a number the rules can make E.164: as it came, prefixed.
        assert_eq!(tp.caller_id("anonymous"), "99anonymous");
        let acme = &c.carriers[1];
        assert_eq!(acme.caller_id("5083084809"), "+15083084809");
    }

    #[test]
    fn bad_numbers_are_refused() {
        let c = config("");
        for n in [
            "",
            "+",
            "+12",
            "+0123456",
            "+1508x3084809",
            "+1234567890123456",
            "sip:1@x",
        ] {
            assert!(
                matches!(c.resolve_phone(n, None), Err(RouteError::BadNumber { .. })),
                "{n}"
            );
        }
        assert_eq!(
            Config::default().resolve_phone("+15083084809", None),
            Err(RouteError::NoGateway(None))
        );
        let e = c.resolve_phone("+1508x", None).unwrap_err().to_string();
        assert!(e.contains("+1508x"), "{e}");
    }

    #[test]
    fn teams_targets() {
        let c = config("[teams]\nfqdn = \"sbc.example.com\"\n");
        let t = c.teams_target("+15083084809", None, false).unwrap();
        assert_eq!(
            t.request_uri.to_string(),
            "sip:+15083084809@sip.pstnhub.microsoft.com:5061;transport=tls"
        );
        assert_eq!(t.tenant_fqdn, "sbc.example.com");
        let t = c
            .teams_target("+1 508 308 4809", Some("contoso.onmicrosoft.com"), true)
            .unwrap();
        assert_eq!(
            t.request_uri.to_string(),
            "sip:+15083084809@sip.pstnhub.microsoft.com:5061;transport=tls;opaque=app:voicemail"
        );
        assert_eq!(t.tenant_fqdn, "contoso.onmicrosoft.com");
        assert!(matches!(
            c.teams_target("5083084809", None, false),
            Err(RouteError::BadNumber { .. })
        ));
        assert_eq!(
            c.teams_target("+15083084809", Some("a b\r\nX: y"), false),
            Err(RouteError::BadTenant("a b\r\nX: y".into()))
        );
        assert_eq!(
            config("").teams_target("+15083084809", None, false),
            Err(RouteError::TeamsNotConfigured)
        );
    }

    #[test]
    fn exact_routes_beat_prefixes_and_longer_prefixes_win() {
        let c = config(
            "[[routes]]\nto = \"+1*\"\napp_url = \"http://a/1\"\n\
             [[routes]]\nto = \"+1508*\"\napp_url = \"http://a/1508\"\n\
             [[routes]]\nto = \"+15083084809\"\napp_url = \"http://a/exact\"\n\
             [[routes]]\nto = \"+150830*\"\napp_url = \"http://a/150830\"\n",
        );
        let url = |n: &str| c.route_for(n).map(|r| r.app_url.as_str());
        assert_eq!(url("+15083084809"), Some("http://a/exact"));
        assert_eq!(url("+15083084800"), Some("http://a/150830"));
        assert_eq!(url("+15081111111"), Some("http://a/1508"));
        assert_eq!(url("+16175551212"), Some("http://a/1"));
        assert_eq!(url("+442079460000"), None);
        assert_eq!(url("15083084809"), None);
        assert_eq!(
            c.routes[1].to,
            NumberPattern::Prefix("+1508".into()),
            "the * is not part of the prefix"
        );
    }
}
