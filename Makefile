# dialplane: `make run` and `make test` on a fresh Debian machine (as root, or with sudo).
# Each installs the Debian packages it needs when they are missing, then builds with cargo.

# Build and link: pkg-config + libspandsp-dev (the benches compare against spandsp's DTMF
# receiver) + libopus-dev (transcoding to and from Opus, through audiopus). Tests: espeak-ng
# and sox (with libsox-fmt-mp3 for the MP3 files) make the speech and music the detectors are
# tested on; sip-tester (SIPp) drives the SIP end-to-end tests; Kamailio fronts `dialplane media`
# as it fronts rtpengine, and with its TLS module relays SIPp's calls to the test UAS over TLS
# (SIPp itself is built without TLS in Debian); libsrtp2-dev: tests/srtp.rs checks our SRTP
# against libsrtp; redis-server is the shared state of the cluster test (tests/cluster.rs: two
# `serve` instances behind Kamailio's dispatcher).
APT_PACKAGES := build-essential pkg-config libspandsp-dev libopus-dev espeak-ng sox \
  libsox-fmt-mp3 sip-tester kamailio kamailio-tls-modules libsrtp2-dev redis-server
CARGO ?= cargo

.PHONY: run test deps check-long bench bench-instructions bench-relay bench-dial bench-reload

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# The webhook tests run a receiver built with jambonz's Node.js client (any node + npm will do).
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; }
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup first"; exit 1; }

# The main job: `dialplane serve` on its embedded defaults with the bundled example app
# (examples/app.json: every call rings the registered user bob and sip:echo@127.0.0.1:5090).
run: deps
	$(CARGO) build --release --bin dialplane
	@echo "== dialplane serve: SIP 127.0.0.1:5060 (UDP, TCP), RTP 40000-49999, REST + /metrics http://127.0.0.1:3000"
	@echo "   Every call rings user bob (a softphone registered as bob / bob-secret, domain 127.0.0.1)"
	@echo "   and sip:echo@127.0.0.1:5090 at once; the first to answer is bridged. Try it with SIPp:"
	@echo "     sipp -sn uas -i 127.0.0.1 -p 5090                 # the callee, in one terminal"
	@echo "     sipp -sn uac -i 127.0.0.1 -p 5091 -m 1 127.0.0.1:5060   # a caller, in another"
	@echo "   Ctrl-C stops it."
	./target/release/dialplane --config examples/serve.toml serve

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

# Criterion benches: our DTMF receiver and whole per-leg pipeline beside spandsp's dtmf_rx.
bench: deps
	$(CARGO) bench -p dialplane-benches
	benches/relay-compare.sh

# The relay alone: floor, rtpengine (when installed), dialplane media, with and without DSP taps.
bench-relay: deps
	benches/relay-compare.sh

# One dial (caller → two forks: one answers, one is cancelled) through `dialplane serve` and
# through Kamailio forking as a proxy: CPU per call at 100 and 300 calls/s, memory per 1000 calls.
# DURATION=10 for a quick check.
bench-dial: deps
	benches/dial-compare.sh

# SIGHUP every 50 ms while 100 calls/s flow through serve: zero failed calls is the bar.
bench-reload: deps
	benches/reload-load.sh

# The same stages counted in instructions (callgrind): exact and repeatable on a noisy machine.
# Per-frame cost of a stage = (its count - the `none` count) / frames.
bench-instructions: deps
	$(CARGO) build --release -p dialplane-benches --bin dsp_instructions
	@for stage in none spandsp dtmf pipeline; do \
	  valgrind --tool=callgrind --callgrind-out-file=/dev/null \
	    ./target/release/dsp_instructions $$stage 20000 2>&1 | grep -E "frames|Collected"; \
	done
	$(CARGO) build --release -p dialplane-benches --bin sip_instructions
	@for mode in none parse serialize both; do \
	  valgrind --tool=callgrind --callgrind-out-file=/dev/null \
	    ./target/release/sip_instructions $$mode 10000 2>&1 | grep -E "messages|Collected"; \
	done

# Long runs, by hand (not in CI): ~4 hours of speech for DTMF talk-off with another seed,
# 20 000 random Q.24 trials, and the 10-minute soak (benches/soak.sh).
check-long: deps
	DTMF_TALKOFF_SEED=7 DTMF_TALKOFF_CHUNKS=60 DTMF_TRIALS=20000 \
	  $(CARGO) test --release -p dialplane-dsp --test dtmf_talkoff --test dtmf_q24 -- --nocapture
	benches/soak.sh
