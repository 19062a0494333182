//! The SIP message the codec benches and the instruction counter parse: an initial INVITE as a
//! carrier's SBC sends it.

/// Two Vias (branch, rport, received), Record-Route, display names on From and To, a From tag,
/// Contact, Allow, Supported, P- and X- headers, and a 245-byte SDP offer (PCMU, PCMA,
/// telephone-event).
pub const INVITE: &[u8] = b"INVITE sip:+15551234567@198.51.100.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK-524287-1---4c7e3a9f1b2d;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;received=10.0.0.5;branch=z9hG4bK8a1b2c3d4e5f\r\n\
Record-Route: <sip:203.0.113.7;lr;ftag=as5f3c9a1e>\r\n\
Max-Forwards: 69\r\n\
From: \"Alice Example\" <sip:+15557654321@203.0.113.7>;tag=as5f3c9a1e\r\n\
To: \"Bob\" <sip:+15551234567@198.51.100.10>\r\n\
Contact: \"Alice Example\" <sip:+15557654321@203.0.113.7:5060;transport=udp>\r\n\
Call-ID: 3c26700b4f5a1e2d7c9b@203.0.113.7\r\n\
CSeq: 102 INVITE\r\n\
P-Asserted-Identity: \"Alice Example\" <sip:+15557654321@203.0.113.7;user=phone>\r\n\
P-Charging-Vector: icid-value=1a2b3c4d5e6f;icid-generated-at=203.0.113.7\r\n\
X-Carrier-Route: trunk-17\r\n\
X-Call-Type: national\r\n\
User-Agent: CarrierSBC 4.2\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PRACK, UPDATE\r\n\
Supported: replaces, timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 245\r\n\
\r\n\
v=0\r\n\
o=CarrierSBC 1720000000 1720000000 IN IP4 203.0.113.7\r\n\
s=-\r\n\
c=IN IP4 203.0.113.7\r\n\
t=0 0\r\n\
m=audio 31000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";
