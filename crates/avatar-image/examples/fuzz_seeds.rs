//! Writes a seed corpus for the `avatar_upload` fuzz target: small real images of each format,
//! plain, with EXIF orientation, and tagged with ICC profiles (linear light, Display P3, grey,
//! garbage), so the fuzzer starts inside the colour-conversion path instead of having to find
//! a valid profile chunk by chance.
//!
//! `cargo run -p gatehouse-avatar-image --features testing --example fuzz_seeds -- fuzz/corpus/avatar_upload`

use std::path::PathBuf;

use gatehouse_avatar_image::testing::{
    DISPLAY_P3_COLOURANTS, SRGB_COLOURANTS, encode_with_profile, icc_garbage, icc_grey_profile, icc_rgb_profile, jpeg,
    jpeg_with_exif, png, png_with_alpha, rgb_pattern, webp,
};
use image::{ExtendedColorType, ImageFormat};

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus/avatar_upload".to_owned()));
    std::fs::create_dir_all(&dir)?;
    let pixels = rgb_pattern(16, 12).into_raw();
    let grey: Vec<u8> = (0..16 * 12).map(|i| (i * 7 % 256) as u8).collect();
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        ("plain.png".to_owned(), png(16, 12)),
        ("alpha.png".to_owned(), png_with_alpha(16, 12)),
        ("plain.jpg".to_owned(), jpeg(16, 12, 80)),
        ("exif-rotated.jpg".to_owned(), jpeg_with_exif(16, 12, 6)),
        ("plain.webp".to_owned(), webp(16, 12)),
    ];
    let profiles = [
        ("linear", icc_rgb_profile(SRGB_COLOURANTS, 1.0)),
        ("p3", icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2)),
        ("garbage", icc_garbage()),
    ];
    for (format, extension) in [(ImageFormat::Png, "png"), (ImageFormat::Jpeg, "jpg"), (ImageFormat::WebP, "webp")] {
        for (name, profile) in &profiles {
            let bytes = encode_with_profile(format, &pixels, (16, 12), ExtendedColorType::Rgb8, Some(profile.clone()));
            seeds.push((format!("icc-{name}.{extension}"), bytes));
        }
    }
    let grey_png =
        encode_with_profile(ImageFormat::Png, &grey, (16, 12), ExtendedColorType::L8, Some(icc_grey_profile(1.8)));
    seeds.push(("icc-grey.png".to_owned(), grey_png));
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("{} seeds in {}", seeds.len(), dir.display());
    Ok(())
}
