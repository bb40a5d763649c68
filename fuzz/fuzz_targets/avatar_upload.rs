//! The upload validation path on arbitrary bytes: [`gatehouse_avatar_image::process`] must
//! return `Ok` or a rejection for every input, never panic, and whatever it accepts must be a
//! small image of a format it names. A small pixel limit keeps each run fast; the limit is a
//! parameter, so the code path is the production one.
#![no_main]

use gatehouse_avatar_image::{Limits, process, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_pixels: 4_000_000, max_side: 512 };
    if let Ok(image) = process(data, limits) {
        assert!(image.width <= 512 && image.height <= 512 && image.width > 0 && image.height > 0);
        assert_eq!(sniff(&image.bytes), Some(image.format));
    }
});
