use std::time::Instant;

use super::*;
use image::{Rgb, Rgba, RgbaImage};

use crate::testing::{
    DISPLAY_P3_COLOURANTS, EXIF_MARKER, SRGB_COLOURANTS, carries_icc_profile, contains, dimensions,
    encode_with_profile, icc_garbage, icc_grey_profile, icc_rgb_profile, jpeg, jpeg_bomb, jpeg_with_exif, png,
    png_bomb, png_header_then_html, png_then_html, png_with_alpha, rgb_pattern, uniform_rgb, webp,
};

fn processed(bytes: &[u8]) -> ProcessedImage {
    process(bytes, Limits::default()).expect("the image is accepted")
}

#[test]
fn a_png_with_transparency_stays_a_png_with_its_alpha() {
    let out = processed(&png_with_alpha(300, 200));

    assert_eq!(out.format, AvatarFormat::Png);
    assert_eq!((out.width, out.height), (300, 200), "small images are not scaled up");
    let decoded = image::load_from_memory(&out.bytes).expect("decodes");
    assert_eq!(decoded.to_rgba8().get_pixel(0, 0).0[3], 0, "the transparent half stays transparent");
    assert_eq!(decoded.to_rgba8().get_pixel(299, 0).0[3], 255);
}

#[test]
fn an_opaque_image_becomes_a_jpeg() {
    for upload in [png(120, 80), jpeg(120, 80, 95), webp(120, 80)] {
        let out = processed(&upload);
        assert_eq!(out.format, AvatarFormat::Jpeg);
        assert_eq!(dimensions(&out.bytes), (120, 80));
        assert_eq!(sniff(&out.bytes), Some(AvatarFormat::Jpeg));
    }
}

#[test]
fn exif_orientation_is_applied_and_all_metadata_dropped() {
    let upload = jpeg_with_exif(300, 200, 6);
    assert!(contains(&upload, b"Exif") && contains(&upload, EXIF_MARKER), "the fixture carries EXIF");

    let out = processed(&upload);

    assert_eq!((out.width, out.height), (200, 300), "orientation 6 turns the landscape file upright");
    assert_eq!(dimensions(&out.bytes), (200, 300));
    assert!(!contains(&out.bytes, b"Exif"), "no EXIF segment");
    assert!(!contains(&out.bytes, EXIF_MARKER), "no camera model");
    assert!(!contains(&out.bytes, &[0xFF, 0xE1]), "no APP1 segment at all");
}

#[test]
fn large_images_are_fitted_within_512_keeping_their_aspect_ratio() {
    for ((width, height), expected) in [((2000, 1000), (512, 256)), ((600, 1200), (256, 512)), ((513, 513), (512, 512))]
    {
        let out = processed(&png(width, height));
        assert_eq!((out.width, out.height), expected, "{width}x{height}");
        assert_eq!(dimensions(&out.bytes), expected);
    }
}

#[test]
fn a_6000_by_4000_jpeg_is_fitted_within_512_and_its_time_printed() {
    let upload = jpeg(6000, 4000, 80);
    assert!(upload.len() < 5 * 1024 * 1024, "the fixture fits the upload limit: {} bytes", upload.len());

    let started = Instant::now();
    let out = processed(&upload);
    let elapsed = started.elapsed();

    assert_eq!(out.width, 512);
    assert!((341..=342).contains(&out.height), "3:2 within rounding: {}", out.height);
    eprintln!("6000x4000 JPEG ({} bytes) processed in {elapsed:?}", upload.len());
}

#[test]
fn a_1_by_1_image_is_kept() {
    for upload in [png(1, 1), png_with_alpha(1, 1), jpeg(1, 1, 90), webp(1, 1)] {
        let out = processed(&upload);
        assert_eq!((out.width, out.height), (1, 1));
    }
}

#[test]
fn the_digest_is_the_sha256_of_the_stored_bytes() {
    let out = processed(&png(10, 10));
    let expected: String = Sha256::digest(&out.bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(out.sha256_hex, expected);
    assert_eq!(processed(&png(10, 10)).sha256_hex, expected, "processing is deterministic");
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let bomb = png_bomb(50_000, 50_000);
    assert!(bomb.len() < 100 * 1024, "a small file: {} bytes", bomb.len());

    let started = Instant::now();
    let result = process(&bomb, Limits::default());

    assert!(matches!(result, Err(ImageRejected::TooManyPixels { width: 50_000, height: 50_000, .. })), "{result:?}");
    assert!(started.elapsed().as_millis() < 500, "refused without decoding: {:?}", started.elapsed());
    let jpeg = process(&jpeg_bomb(65_000, 65_000), Limits::default());
    assert!(matches!(jpeg, Err(ImageRejected::TooManyPixels { .. })), "{jpeg:?}");
}

#[test]
fn the_pixel_limit_is_inclusive() {
    let limits = Limits { max_pixels: 100, max_side: 512 };
    assert!(process(&png(10, 10), limits).is_ok());
    assert!(matches!(process(&png(10, 11), limits), Err(ImageRejected::TooManyPixels { .. })));
}

#[test]
fn a_valid_header_followed_by_html_is_refused() {
    assert_eq!(process(&png_header_then_html(), Limits::default()), Err(ImageRejected::Corrupt));
}

#[test]
fn html_appended_to_a_valid_png_never_reaches_the_output() {
    let out = processed(&png_then_html());
    assert!(!contains(&out.bytes, b"<script"), "only re-encoded pixels are stored");
}

#[test]
fn what_is_not_png_jpeg_or_webp_is_refused_by_its_content() {
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec();
    for upload in [b"hello, I am text".to_vec(), Vec::new(), gif, svg, b"RIFF\0\0\0\0WAVE".to_vec()] {
        assert_eq!(process(&upload, Limits::default()), Err(ImageRejected::UnsupportedFormat), "{upload:?}");
    }
}

#[test]
fn truncated_images_are_refused() {
    for (name, upload) in
        [("png", png(64, 64)), ("jpeg", jpeg(64, 64, 90)), ("webp", webp(64, 64)), ("rgba png", png_with_alpha(64, 64))]
    {
        for keep in [upload.len() / 2, upload.len() - 20, upload.len() - 1, 12, 40] {
            let result = process(&upload[..keep.min(upload.len())], Limits::default());
            assert!(result.is_err(), "{name}: {keep} of {} bytes decoded", upload.len());
        }
    }
}

/// The fuzz target's property, run on every `cargo test` since cargo-fuzz needs nightly: any
/// bytes, and in particular mutations of valid images, give `Ok` or a rejection, never a panic.
#[test]
fn mutated_and_random_bytes_never_panic() {
    let seeds = [png(24, 16), png_with_alpha(16, 24), jpeg(24, 16, 80), jpeg_with_exif(16, 8, 6), webp(16, 16)];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut outcomes = [0usize; 2];
    for round in 0..3000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        match rng.below(4) {
            0 => {
                for _ in 0..=rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.byte();
                }
            }
            1 => bytes.truncate(rng.below(bytes.len())),
            2 => {
                let at = rng.below(bytes.len());
                let extra: Vec<u8> = (0..rng.below(64)).map(|_| rng.byte()).collect();
                bytes.splice(at..at, extra);
            }
            _ => {
                let magic_len = [8, 3, 12][rng.below(3)];
                let tail: Vec<u8> = (0..rng.below(512)).map(|_| rng.byte()).collect();
                bytes.truncate(magic_len);
                bytes.extend_from_slice(&tail);
            }
        }
        let outcome = std::panic::catch_unwind(|| process(&bytes, Limits::default()));
        let outcome = outcome.unwrap_or_else(|_| panic!("round {round} panicked on {bytes:02x?}"));
        outcomes[usize::from(outcome.is_ok())] += 1;
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes were exercised: {outcomes:?}");
}

/// A tiny deterministic generator, so failures reproduce without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { usize::try_from(self.next() % n as u64).unwrap_or(0) }
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

#[tokio::test]
async fn the_port_processes_on_the_blocking_pool() {
    let processor = ImageAvatarProcessor::new(Limits::default(), 2);
    let out = processor.process(png(700, 350)).await.expect("accepted");
    assert_eq!((out.width, out.height), (512, 256));
    let rejected = processor.process(b"not an image".to_vec()).await;
    assert_eq!(rejected, Err(ImageRejected::UnsupportedFormat));
}

#[test]
fn a_linear_light_profile_is_converted_to_srgb_and_an_untagged_image_left_alone() {
    let grey = uniform_rgb(16, 16, [128, 128, 128]);
    let linear = icc_rgb_profile(SRGB_COLOURANTS, 1.0);
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
        let tagged =
            encode_with_profile(format, grey.as_raw(), (16, 16), ExtendedColorType::Rgb8, Some(linear.clone()));
        assert!(carries_icc_profile(&tagged), "{format:?}: the fixture carries its profile");
        let untagged = encode_with_profile(format, grey.as_raw(), (16, 16), ExtendedColorType::Rgb8, None);

        let converted = centre_pixel(&processed(&tagged).bytes);
        let kept = centre_pixel(&processed(&untagged).bytes);

        for channel in converted {
            assert!(channel.abs_diff(188) <= 2, "{format:?}: linear 128 is sRGB ~188, got {converted:?}");
        }
        for channel in kept {
            assert!(channel.abs_diff(128) <= 2, "{format:?}: untagged pixels are sRGB already, got {kept:?}");
        }
    }
}

#[test]
fn a_wide_gamut_colour_is_converted_measurably_and_alpha_is_kept() {
    let colour = [200u8, 60, 60, 255];
    let rgba = RgbaImage::from_fn(16, 16, |x, _| if x < 8 { Rgba([0, 0, 0, 0]) } else { Rgba(colour) });
    let p3 = icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2);
    let tagged = encode_with_profile(ImageFormat::Png, rgba.as_raw(), (16, 16), ExtendedColorType::Rgba8, Some(p3));

    let out = processed(&tagged);

    assert_eq!(out.format, AvatarFormat::Png, "transparency is kept");
    let decoded = image::load_from_memory(&out.bytes).expect("decodes").to_rgba8();
    let [r, g, b, a] = decoded.get_pixel(12, 8).0;
    assert_eq!(a, 255);
    assert_eq!(decoded.get_pixel(2, 8).0[3], 0, "the transparent half stays transparent");
    assert!(r > 200 + 10, "Display P3 red is more saturated than sRGB red: {r} should exceed 210");
    assert!(g + 10 < 60 || b + 10 < 60, "and the other channels drop: ({r}, {g}, {b})");
}

#[test]
fn an_srgb_profile_changes_nothing() {
    let decoded = DynamicImage::ImageRgb8(rgb_pattern(64, 64));

    let (kept, conversion) = colour::to_srgb(decoded.clone(), Some(&moxcms_srgb())).expect("converts");

    assert_eq!(conversion, colour::Conversion::AlreadySrgb, "the canonical sRGB profile is recognised");
    assert_eq!(kept, decoded, "and the pixels are left exactly as they are");
    let (_, conversion) = colour::to_srgb(decoded, None).expect("converts");
    assert_eq!(conversion, colour::Conversion::Untagged);
}

fn moxcms_srgb() -> Vec<u8> {
    moxcms::ColorProfile::new_srgb().encode().expect("encodes")
}

#[test]
fn a_grey_image_with_a_grey_profile_is_converted() {
    let grey = image::GrayImage::from_pixel(16, 16, image::Luma([128]));
    let linear = icc_grey_profile(1.0);
    let tagged = encode_with_profile(ImageFormat::Png, grey.as_raw(), (16, 16), ExtendedColorType::L8, Some(linear));

    let converted = centre_pixel(&processed(&tagged).bytes);

    for channel in converted {
        assert!(channel.abs_diff(188) <= 2, "linear grey 128 is sRGB ~188, got {converted:?}");
    }
}

#[test]
fn a_garbage_or_mismatched_profile_is_ignored_not_refused() {
    let grey = uniform_rgb(16, 16, [128, 128, 128]);
    for (name, profile) in [
        ("garbage", icc_garbage()),
        ("truncated", icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2)[..100].to_vec()),
        ("not a profile", b"<html>definitely not ICC</html>".to_vec()),
        ("grey profile on RGB pixels", icc_grey_profile(1.0)),
    ] {
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
            let tagged =
                encode_with_profile(format, grey.as_raw(), (16, 16), ExtendedColorType::Rgb8, Some(profile.clone()));

            let out = process(&tagged, Limits::default())
                .unwrap_or_else(|e| panic!("{name} in {format:?}: accepted, not {e:?}"));

            let pixel = centre_pixel(&out.bytes);
            assert!(pixel.iter().all(|c| c.abs_diff(128) <= 2), "{name} in {format:?}: taken as sRGB, got {pixel:?}");
            assert!(!carries_icc_profile(&out.bytes), "{name} in {format:?}: not carried over");
        }
    }
}

#[test]
fn no_stored_image_carries_an_icc_profile() {
    let p3 = icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2);
    let opaque = rgb_pattern(64, 64);
    let transparent = RgbaImage::from_fn(64, 64, |x, y| {
        let Rgb([r, g, b]) = *opaque.get_pixel(x, y);
        Rgba([r, g, b, if x < 32 { 0 } else { 255 }])
    });
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
        let tagged = encode_with_profile(format, opaque.as_raw(), (64, 64), ExtendedColorType::Rgb8, Some(p3.clone()));
        assert!(carries_icc_profile(&tagged), "{format:?}: the fixture carries its profile");
        let out = processed(&tagged);
        assert_eq!(out.format, AvatarFormat::Jpeg);
        assert!(!carries_icc_profile(&out.bytes), "{format:?}: no APP2 ICC_PROFILE in the stored JPEG");
        assert!(!contains(&out.bytes, &[0xFF, 0xE2]), "{format:?}: no APP2 segment at all");
    }
    for format in [ImageFormat::Png, ImageFormat::WebP] {
        let tagged =
            encode_with_profile(format, transparent.as_raw(), (64, 64), ExtendedColorType::Rgba8, Some(p3.clone()));
        let out = processed(&tagged);
        assert_eq!(out.format, AvatarFormat::Png);
        assert!(!carries_icc_profile(&out.bytes), "{format:?}: no iCCP chunk in the stored PNG");
    }
}

#[test]
fn a_profile_on_a_decompression_bomb_is_never_reached() {
    let mut bomb = png_bomb(50_000, 50_000);
    // An iCCP chunk before the image data, as the format requires.
    let with_profile = encode_with_profile(
        ImageFormat::Png,
        uniform_rgb(1, 1, [0, 0, 0]).as_raw(),
        (1, 1),
        ExtendedColorType::Rgb8,
        Some(icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2)),
    );
    let iccp_at = with_profile.windows(4).position(|w| w == b"iCCP").expect("an iCCP chunk") - 4;
    let iccp_len = usize::try_from(u32::from_be_bytes(with_profile[iccp_at..iccp_at + 4].try_into().expect("4 bytes")))
        .expect("small")
        + 12;
    let ihdr_end = 8 + 25;
    bomb.splice(ihdr_end..ihdr_end, with_profile[iccp_at..iccp_at + iccp_len].iter().copied());

    let started = Instant::now();
    let result = process(&bomb, Limits::default());

    assert!(matches!(result, Err(ImageRejected::TooManyPixels { .. })), "{result:?}");
    assert!(started.elapsed().as_millis() < 500, "refused from the header");
}

/// The centre pixel of an encoded image, as RGB.
fn centre_pixel(bytes: &[u8]) -> [u8; 3] {
    let decoded = image::load_from_memory(bytes).expect("decodes").to_rgb8();
    decoded.get_pixel(decoded.width() / 2, decoded.height() / 2).0
}

#[test]
fn a_6000_by_4000_wide_gamut_photo_is_converted_and_processed() {
    let photo = rgb_pattern(6000, 4000);
    let p3 = icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2);
    let mut upload = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut upload, 80);
    encoder.set_icc_profile(p3).expect("JPEG carries ICC profiles");
    encoder.write_image(photo.as_raw(), 6000, 4000, ExtendedColorType::Rgb8).expect("encodes");
    let decoded = image::load_from_memory(&upload).expect("decodes");

    let started = Instant::now();
    let (_, conversion) = colour::to_srgb(decoded, Some(&icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2))).expect("ok");
    let converting = started.elapsed();
    let started = Instant::now();
    let out = processed(&upload);
    let whole = started.elapsed();

    assert_eq!(conversion, colour::Conversion::Converted);
    assert_eq!(out.width, 512);
    assert!(!carries_icc_profile(&out.bytes));
    eprintln!("6000x4000 Display P3 JPEG: colour conversion {converting:?}, whole processing {whole:?}");
}

#[test]
fn an_icc_v4_display_p3_profile_is_honoured_in_every_format() {
    let p3_v4 = moxcms::ColorProfile::new_display_p3().encode().expect("encodes");
    assert_eq!(p3_v4.get(8), Some(&4), "an ICC v4 profile");
    let colour = uniform_rgb(16, 16, [200, 60, 60]);
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
        let tagged =
            encode_with_profile(format, colour.as_raw(), (16, 16), ExtendedColorType::Rgb8, Some(p3_v4.clone()));

        let [r, g, b] = centre_pixel(&processed(&tagged).bytes);
        eprintln!("{format:?}: Display P3 (200, 60, 60) tagged v4 -> sRGB ({r}, {g}, {b})");

        assert!(r >= 212, "{format:?}: Display P3 (200, 60, 60) is a more saturated red in sRGB: ({r}, {g}, {b})");
        assert!(!carries_icc_profile(&processed(&tagged).bytes), "{format:?}");
    }
}

#[test]
fn a_16_bit_png_is_converted_at_full_depth() {
    let level: u16 = 32_896; // 128.5 of 255
    let samples: Vec<u8> = std::iter::repeat_n(level, 16 * 16 * 3).flat_map(u16::to_ne_bytes).collect();
    let linear = icc_rgb_profile(SRGB_COLOURANTS, 1.0);
    let tagged = encode_with_profile(ImageFormat::Png, &samples, (16, 16), ExtendedColorType::Rgb16, Some(linear));
    let decoded = image::load_from_memory(&tagged).expect("decodes");
    assert_eq!(decoded.color(), image::ColorType::Rgb16, "the fixture is 16-bit");

    let (converted, conversion) =
        colour::to_srgb(decoded, Some(&icc_rgb_profile(SRGB_COLOURANTS, 1.0))).expect("converts");
    let out = centre_pixel(&processed(&tagged).bytes);

    assert_eq!(conversion, colour::Conversion::Converted);
    assert_eq!(converted.color(), image::ColorType::Rgb16, "converted in its own 16-bit buffer");
    assert!(out.iter().all(|c| c.abs_diff(188) <= 2), "linear 0.502 is sRGB ~188: {out:?}");
}

#[test]
fn mutated_icc_profiles_never_panic_or_refuse_the_image() {
    let grey = uniform_rgb(8, 8, [128, 128, 128]);
    let seeds = [
        icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2),
        icc_grey_profile(1.0),
        moxcms::ColorProfile::new_adobe_rgb().encode().expect("encodes"),
        moxcms::ColorProfile::new_bt2020().encode().expect("encodes"),
    ];
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let mut conversions = [0usize; 2];
    for round in 0..1500 {
        let mut profile = seeds[round % seeds.len()].clone();
        match rng.below(3) {
            0 => {
                for _ in 0..=rng.below(16) {
                    let at = rng.below(profile.len());
                    profile[at] = rng.byte();
                }
            }
            1 => profile.truncate(rng.below(profile.len())),
            _ => {
                // Tag offsets and sizes live in the table right after the 128-byte header.
                let at = 128 + rng.below(profile.len().saturating_sub(128).clamp(1, 96));
                let end = (at + 4).min(profile.len());
                for byte in &mut profile[at..end] {
                    *byte = rng.byte();
                }
            }
        }
        let upload =
            encode_with_profile(ImageFormat::Png, grey.as_raw(), (8, 8), ExtendedColorType::Rgb8, Some(profile));
        let outcome = std::panic::catch_unwind(|| process(&upload, Limits::default()));
        let outcome = outcome.unwrap_or_else(|_| panic!("round {round} panicked"));
        let out = outcome.unwrap_or_else(|e| panic!("round {round}: a bad profile refused the image: {e:?}"));
        let pixel = centre_pixel(&out.bytes);
        conversions[usize::from(pixel.iter().any(|c| c.abs_diff(128) > 2))] += 1;
    }
    eprintln!("mutated profiles: {} ignored or sRGB-like, {} converted", conversions[0], conversions[1]);
}
