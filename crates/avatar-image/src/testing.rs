//! Real images, built in memory, for this crate's tests and the end-to-end suite (feature
//! `testing`): well-formed PNG, JPEG and WebP files, a JPEG carrying EXIF orientation and GPS
//! tags, and hostile files (bombs, polyglots, truncations) written byte by byte.
//!
//! These helpers panic on failure, as test fixtures do.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

/// A `width`×`height` RGB gradient with some structure, so encoders cannot shrink it to
/// nothing and a wrong rotation shows.
#[must_use]
pub fn rgb_pattern(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let r = u8::try_from(x * 255 / width.max(1)).unwrap_or(u8::MAX);
        let g = u8::try_from(y * 255 / height.max(1)).unwrap_or(u8::MAX);
        let b = if (x / 16 + y / 16) % 2 == 0 { 40 } else { 200 };
        Rgb([r, g, b])
    })
}

/// A PNG whose left half is transparent.
#[must_use]
pub fn png_with_alpha(width: u32, height: u32) -> Vec<u8> {
    let pattern = rgb_pattern(width, height);
    let image = RgbaImage::from_fn(width, height, |x, y| {
        let Rgb([r, g, b]) = *pattern.get_pixel(x, y);
        Rgba([r, g, b, if x < width / 2 { 0 } else { 255 }])
    });
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(image.as_raw(), width, height, ExtendedColorType::Rgba8).unwrap();
    out
}

/// An opaque RGB PNG.
#[must_use]
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = rgb_pattern(width, height);
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(image.as_raw(), width, height, ExtendedColorType::Rgb8).unwrap();
    out
}

/// A baseline JPEG at `quality`.
#[must_use]
pub fn jpeg(width: u32, height: u32, quality: u8) -> Vec<u8> {
    let image = rgb_pattern(width, height);
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(image.as_raw(), width, height, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A lossless WebP.
#[must_use]
pub fn webp(width: u32, height: u32) -> Vec<u8> {
    let image = rgb_pattern(width, height);
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out).write_image(image.as_raw(), width, height, ExtendedColorType::Rgb8).unwrap();
    out
}

/// A text that both a GPS-aware reader and a byte search find: the camera model stored in
/// [`jpeg_with_exif`].
pub const EXIF_MARKER: &[u8] = b"GatehouseCam";

/// A `width`×`height` JPEG with an EXIF APP1 segment: `Orientation` = `orientation` (6 means
/// "rotate 90° clockwise to display", so a 300×200 file displays as 200×300), a `Model` of
/// [`EXIF_MARKER`], and GPS latitude 52° 31′ N.
#[must_use]
pub fn jpeg_with_exif(width: u32, height: u32, orientation: u16) -> Vec<u8> {
    let plain = jpeg(width, height, 90);
    let exif = exif_tiff(orientation);
    let mut segment = Vec::new();
    segment.extend_from_slice(&[0xFF, 0xE1]);
    let length = u16::try_from(2 + 6 + exif.len()).unwrap();
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&exif);
    // Right after SOI, where cameras put it.
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&segment);
    out.extend_from_slice(&plain[2..]);
    out
}

/// A little-endian TIFF structure with IFD0 {Orientation, Model, GPS IFD pointer} and a GPS IFD
/// {GPSLatitudeRef, GPSLatitude}.
fn exif_tiff(orientation: u16) -> Vec<u8> {
    const IFD0: u32 = 8;
    const IFD0_ENTRIES: u16 = 3;
    const GPS_ENTRIES: u16 = 2;
    let ifd_len = |entries: u16| 2 + 12 * u32::from(entries) + 4;
    let model_at = IFD0 + ifd_len(IFD0_ENTRIES);
    let model_len = u32::try_from(EXIF_MARKER.len() + 1).unwrap();
    let gps_at = model_at + model_len + (model_len % 2);
    let latitude_at = gps_at + ifd_len(GPS_ENTRIES);

    let mut t = Vec::new();
    t.extend_from_slice(b"II");
    t.extend_from_slice(&42u16.to_le_bytes());
    t.extend_from_slice(&IFD0.to_le_bytes());
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    };
    let short = |v: u16| {
        let [a, b] = v.to_le_bytes();
        [a, b, 0, 0]
    };
    // IFD0, tags ascending.
    t.extend_from_slice(&IFD0_ENTRIES.to_le_bytes());
    entry(&mut t, 0x0110, 2, model_len, model_at.to_le_bytes()); // Model, ASCII
    entry(&mut t, 0x0112, 3, 1, short(orientation)); // Orientation, SHORT
    entry(&mut t, 0x8825, 4, 1, gps_at.to_le_bytes()); // GPS IFD pointer, LONG
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(EXIF_MARKER);
    t.push(0);
    if model_len % 2 == 1 {
        t.push(0);
    }
    // GPS IFD.
    t.extend_from_slice(&GPS_ENTRIES.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0"); // GPSLatitudeRef
    entry(&mut t, 0x0002, 5, 3, latitude_at.to_le_bytes()); // GPSLatitude, 3 RATIONALs
    t.extend_from_slice(&0u32.to_le_bytes());
    for (numerator, denominator) in [(52u32, 1u32), (31, 1), (0, 1)] {
        t.extend_from_slice(&numerator.to_le_bytes());
        t.extend_from_slice(&denominator.to_le_bytes());
    }
    t
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry.
#[must_use]
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A decompression bomb: a small, well-formed PNG (valid CRCs, a real zlib stream) whose
/// header declares `width`×`height` RGB pixels, 7.5 GB decoded at 50000×50000.
#[must_use]
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &header);
    // 64 KiB of zero bytes: a valid stream, far too short for the declared rows.
    let zeros = vec![0u8; 64 * 1024];
    png_chunk(&mut out, b"IDAT", &zlib_stored(&zeros));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A zlib stream of `data` in stored (uncompressed) blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = u16::try_from(chunk.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A small JPEG whose frame header (SOF) is patched to declare `width`×`height`.
#[must_use]
pub fn jpeg_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg(16, 16, 80);
    let sof = out.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

/// A polyglot: a valid PNG signature and header chunk, followed by an HTML document instead
/// of image data. Browsers that sniff would render it as a page.
#[must_use]
pub fn png_header_then_html() -> Vec<u8> {
    let whole = png(8, 8);
    // Signature (8) + IHDR chunk (4 + 4 + 13 + 4).
    let mut out = whole[..33].to_vec();
    out.extend_from_slice(b"<html><body><script>alert(document.cookie)</script></body></html>");
    out
}

/// A complete, valid PNG with an HTML document appended after `IEND`.
#[must_use]
pub fn png_then_html() -> Vec<u8> {
    let mut out = png(8, 8);
    out.extend_from_slice(b"<html><body><script>alert(document.cookie)</script></body></html>");
    out
}

/// Decodes an image (any of the three formats) and returns its dimensions.
#[must_use]
pub fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let image = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().unwrap().decode().unwrap();
    (image.width(), image.height())
}

/// Whether `needle` occurs in `haystack`.
#[must_use]
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// D50-adapted XYZ colourants (red, green, blue), as ICC matrix/TRC profiles store them: sRGB.
pub const SRGB_COLOURANTS: [[f64; 3]; 3] =
    [[0.436_07, 0.222_49, 0.013_93], [0.385_15, 0.716_87, 0.097_11], [0.143_07, 0.060_61, 0.714_19]];
/// D50-adapted XYZ colourants of Display P3 (a wide-gamut space: its red and green are more
/// saturated than sRGB's).
pub const DISPLAY_P3_COLOURANTS: [[f64; 3]; 3] =
    [[0.515_12, 0.241_19, -0.001_05], [0.291_97, 0.692_25, 0.041_88], [0.157_11, 0.066_56, 0.784_07]];
/// The ICC profile connection space white (D50).
const D50: [f64; 3] = [0.9642, 1.0, 0.8249];

/// An ICC v2 RGB display profile written byte by byte: matrix/TRC, with `colourants` and the
/// same pure power curve `gamma` on each channel (1.0 is linear light).
#[must_use]
pub fn icc_rgb_profile(colourants: [[f64; 3]; 3], gamma: f64) -> Vec<u8> {
    let [red, green, blue] = colourants;
    icc_profile(
        b"RGB ",
        &[
            (*b"wtpt", xyz_tag(D50)),
            (*b"rXYZ", xyz_tag(red)),
            (*b"gXYZ", xyz_tag(green)),
            (*b"bXYZ", xyz_tag(blue)),
            (*b"rTRC", curve_tag(gamma)),
            (*b"gTRC", curve_tag(gamma)),
            (*b"bTRC", curve_tag(gamma)),
        ],
    )
}

/// An ICC v2 grey display profile written byte by byte: one power curve `gamma`.
#[must_use]
pub fn icc_grey_profile(gamma: f64) -> Vec<u8> {
    icc_profile(b"GRAY", &[(*b"wtpt", xyz_tag(D50)), (*b"kTRC", curve_tag(gamma))])
}

/// A profile with a valid-looking start and garbage after it.
#[must_use]
pub fn icc_garbage() -> Vec<u8> {
    let mut out = icc_rgb_profile(DISPLAY_P3_COLOURANTS, 2.2);
    for (i, byte) in out.iter_mut().enumerate().skip(128) {
        *byte = u8::try_from(i * 37 % 251).unwrap();
    }
    out
}

fn s15_fixed16(value: f64) -> [u8; 4] {
    #[allow(clippy::cast_possible_truncation)]
    let fixed = (value * 65_536.0).round() as i32;
    fixed.to_be_bytes()
}

fn xyz_tag(xyz: [f64; 3]) -> Vec<u8> {
    let mut tag = b"XYZ \0\0\0\0".to_vec();
    for value in xyz {
        tag.extend_from_slice(&s15_fixed16(value));
    }
    tag
}

fn curve_tag(gamma: f64) -> Vec<u8> {
    let mut tag = b"curv\0\0\0\0".to_vec();
    tag.extend_from_slice(&1u32.to_be_bytes());
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let u8_fixed8 = (gamma * 256.0).round() as u16;
    tag.extend_from_slice(&u8_fixed8.to_be_bytes());
    tag.extend_from_slice(&[0, 0]);
    tag
}

/// A display-class ICC v2.1 profile in `colour_space` with an XYZ connection space.
fn icc_profile(colour_space: &[u8; 4], tags: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let table_len = 4 + 12 * tags.len();
    let mut data = Vec::new();
    let mut table = u32::try_from(tags.len()).unwrap().to_be_bytes().to_vec();
    for (signature, body) in tags {
        let offset = 128 + table_len + data.len();
        table.extend_from_slice(signature);
        table.extend_from_slice(&u32::try_from(offset).unwrap().to_be_bytes());
        table.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        data.extend_from_slice(body);
        while data.len() % 4 != 0 {
            data.push(0);
        }
    }
    let size = 128 + table.len() + data.len();
    let mut header = Vec::with_capacity(128);
    header.extend_from_slice(&u32::try_from(size).unwrap().to_be_bytes());
    header.extend_from_slice(b"\0\0\0\0"); // preferred CMM
    header.extend_from_slice(&[2, 0x10, 0, 0]); // version 2.1
    header.extend_from_slice(b"mntr");
    header.extend_from_slice(colour_space);
    header.extend_from_slice(b"XYZ ");
    for part in [2026u16, 1, 1, 0, 0, 0] {
        header.extend_from_slice(&part.to_be_bytes());
    }
    header.extend_from_slice(b"acsp");
    header.resize(64, 0); // platform, flags, manufacturer, model, attributes
    header.extend_from_slice(&0u32.to_be_bytes()); // perceptual intent
    for value in D50 {
        header.extend_from_slice(&s15_fixed16(value));
    }
    header.resize(128, 0); // creator, profile id, reserved
    let mut out = header;
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    out
}

/// A `width`×`height` image of one colour.
#[must_use]
pub fn uniform_rgb(width: u32, height: u32, colour: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb(colour))
}

/// Encodes `pixels` (`colour` layout) as `format` (PNG, lossless WebP, or JPEG at quality
/// 100), with `icc` embedded when given (PNG iCCP, WebP ICCP, JPEG APP2).
#[must_use]
pub fn encode_with_profile(
    format: image::ImageFormat,
    pixels: &[u8],
    (width, height): (u32, u32),
    colour: ExtendedColorType,
    icc: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        image::ImageFormat::Png => {
            let mut encoder = PngEncoder::new(&mut out);
            if let Some(icc) = icc {
                encoder.set_icc_profile(icc).unwrap();
            }
            encoder.write_image(pixels, width, height, colour).unwrap();
        }
        image::ImageFormat::WebP => {
            let mut encoder = WebPEncoder::new_lossless(&mut out);
            if let Some(icc) = icc {
                encoder.set_icc_profile(icc).unwrap();
            }
            encoder.write_image(pixels, width, height, colour).unwrap();
        }
        image::ImageFormat::Jpeg => {
            let mut encoder = JpegEncoder::new_with_quality(&mut out, 100);
            if let Some(icc) = icc {
                encoder.set_icc_profile(icc).unwrap();
            }
            encoder.write_image(pixels, width, height, colour).unwrap();
        }
        other => panic!("no encoder for {other:?} here"),
    }
    out
}

/// Whether an encoded PNG, JPEG or WebP carries an ICC profile (PNG `iCCP`, JPEG `APP2`
/// `ICC_PROFILE`, WebP `ICCP` chunk).
#[must_use]
pub fn carries_icc_profile(bytes: &[u8]) -> bool {
    contains(bytes, b"iCCP") || contains(bytes, b"ICC_PROFILE") || contains(bytes, b"ICCP")
}
