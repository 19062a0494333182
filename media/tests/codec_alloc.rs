//! Transcoding allocates nothing per packet once its transcoders exist: PCMU → Opus → PCMU
//! through two transcoders, counted after a warm-up.

use dialplane_media::codec::Transcoder;
use dialplane_media::endpoint::Codec;
use dsp::g711::Law;

mod counting_alloc;
use counting_alloc::allocs;

#[test]
fn transcoding_allocates_nothing_per_packet() {
    let mut to_opus = Transcoder::new(Codec::Pcmu, Codec::Opus, 1).unwrap();
    let mut to_pcmu = Transcoder::new(Codec::Opus, Codec::Pcmu, 2).unwrap();
    let (mut opus, mut pcmu) = ([0u8; 2048], [0u8; 2048]);
    let mut payload = [0u8; 160];
    let mut frames = 0;
    let mut counted = None;
    for k in 0..200u32 {
        if k == 20 {
            counted = Some(allocs());
        }
        for (i, c) in payload.iter_mut().enumerate() {
            let t = (k * 160 + i as u32) as f32 / 8000.0;
            *c = Law::Ulaw.encode((8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16);
        }
        assert!(to_opus.push(k * 160, &payload).unwrap());
        while let Some(o) = to_opus.pop(&mut opus, |_, _| {}) {
            let o = o.unwrap();
            let ts = u32::from_be_bytes(opus[4..8].try_into().unwrap());
            assert!(to_pcmu.push(ts, &opus[12..o.len]).unwrap());
            while let Some(p) = to_pcmu.pop(&mut pcmu, |_, _| {}) {
                assert_eq!(p.unwrap().len, 12 + 160);
                frames += 1;
            }
        }
    }
    let during = allocs() - counted.unwrap();
    assert!(frames >= 190, "{frames} frames through both");
    assert_eq!(during, 0, "allocations while transcoding");
}
