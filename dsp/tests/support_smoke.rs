//! The test signal sources themselves work (espeak-ng and sox are installed and produce audio).
mod support;

#[test]
fn speech_and_synth_produce_audio_at_8k() {
    let s = support::speech("hello there", "en-us", 160, 50);
    assert!(s.len() > 4000, "{} samples", s.len());
    assert!(support::mean_square(&s) > 1e-4);
    let t = support::sox_synth(&["0.5", "sine", "1000"]);
    assert_eq!(t.len(), 4000);
}
