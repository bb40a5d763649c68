//! Turns untrusted uploads into safe avatar images: [`process`] decides the format by the
//! bytes, refuses decompression bombs from the header alone, decodes fully, applies the EXIF
//! orientation, converts colours to sRGB when an embedded ICC profile says they are in another
//! space (see [`colour`]), drops every piece of metadata, fits the image within 512×512 and
//! re-encodes it. [`ImageAvatarProcessor`] is the domain's [`AvatarProcessor`] port on it, running on
//! tokio's blocking pool with bounded concurrency.
//!
//! [`process`] is a plain function over a byte slice so the fuzz target (`fuzz/`) and the
//! tests can call it directly. This crate depends on the domain and the `image` codecs only;
//! it must never depend on the web framework, storage or another adapter.
//!
//! Output formats: PNG when the image uses transparency (lossless, universally supported),
//! JPEG at quality 85 otherwise (a 512×512 photo is ~40–80 KB, where the `image` crate's
//! WebP encoder, lossless only, would write several times that).

use std::io::Cursor;
use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_domain::ports::AvatarProcessor;
use gatehouse_domain::{AvatarFormat, ImageRejected, ProcessedImage};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat, ImageReader};
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

/// The most pixels an upload may declare (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;
/// The largest width and height of a stored avatar.
pub const MAX_SIDE: u32 = 512;
/// JPEG quality of stored avatars: visually lossless at avatar sizes.
const JPEG_QUALITY: u8 = 85;
/// The decoders' allocation ceiling: a 40-megapixel image at 16-bit RGBA (8 bytes a pixel)
/// plus headroom for the decoders' own buffers.
const MAX_DECODER_ALLOC: u64 = MAX_PIXELS * 8 + 64 * 1024 * 1024;

/// What [`process`] accepts and produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most pixels (width × height) an upload may declare.
    pub max_pixels: u64,
    /// The output fits within `max_side` × `max_side`, keeping the aspect ratio.
    pub max_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_pixels: MAX_PIXELS, max_side: MAX_SIDE }
    }
}

/// The upload's format, by its leading bytes ("magic numbers") alone.
#[must_use]
pub fn sniff(bytes: &[u8]) -> Option<AvatarFormat> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(PNG) {
        Some(AvatarFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(AvatarFormat::Jpeg)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(AvatarFormat::WebP)
    } else {
        None
    }
}

/// Validates and re-encodes one upload.
///
/// Steps, in order: the format is decided by [`sniff`]; the header is read and an image
/// declaring more than `limits.max_pixels` is refused before any pixel buffer exists; the
/// image is decoded completely (a truncated or corrupt file fails here); the EXIF orientation
/// is applied; pixels an embedded ICC profile describes as another colour space are converted
/// to sRGB (an unreadable or unusable profile is ignored, pixels taken as sRGB: see
/// [`colour`]); the image is scaled down to fit `limits.max_side` (never up); it is
/// re-encoded without any metadata (no EXIF, GPS, ICC, text chunks) as PNG when it uses
/// transparency and as JPEG otherwise.
///
/// CPU-bound (tens to hundreds of milliseconds for large photos): call it from a blocking
/// thread, never from an async worker.
///
/// # Errors
///
/// [`ImageRejected`] for every input that is not an acceptable image; this function never
/// panics on any input (see the fuzz target).
pub fn process(bytes: &[u8], limits: Limits) -> Result<ProcessedImage, ImageRejected> {
    let format = sniff(bytes).ok_or(ImageRejected::UnsupportedFormat)?;
    let complete = match format {
        AvatarFormat::Png => png_is_complete(bytes),
        AvatarFormat::Jpeg => jpeg_is_complete(bytes),
        // The WebP decoder checks the RIFF length against the data.
        AvatarFormat::WebP => true,
    };
    if !complete {
        return Err(ImageRejected::Corrupt);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(rejection)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageRejected::TooManyPixels { width, height, max_pixels: limits.max_pixels });
    }
    if width == 0 || height == 0 {
        return Err(ImageRejected::Corrupt);
    }
    // Broken EXIF does not make a broken image: it is dropped anyway.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // Read from the headers (PNG iCCP, JPEG APP2, WebP ICCP), before any pixel is decoded. A
    // profile that cannot even be extracted is ignored like an unreadable one.
    let icc = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(rejection)?;
    let (mut image, conversion) = colour::to_srgb(image, icc.as_deref()).map_err(|e| {
        tracing::error!(error = %e, width, height, "colour conversion of a decoded avatar failed");
        ImageRejected::Corrupt
    })?;
    tracing::debug!(?conversion, "colour space");
    image.apply_orientation(orientation);
    let image = fit(image, limits.max_side);
    encode(&image)
}

/// Whether a PNG has its `IEND` chunk (with its fixed CRC). The decoder stops once it has the
/// pixels and would accept a file cut anywhere after them; a truncated upload is refused.
fn png_is_complete(bytes: &[u8]) -> bool {
    const IEND: &[u8] = b"\0\0\0\0IEND\xAE\x42\x60\x82";
    bytes.windows(IEND.len()).any(|window| window == IEND)
}

/// Whether a JPEG's marker structure runs from SOI to an EOI marker. The JPEG decoder is
/// lenient and fills in what a truncated file lacks; a truncated upload must be refused, so
/// the structure is walked first: segments by their lengths, entropy-coded data up to the next
/// real marker (skipping stuffed `FF 00` bytes and restart markers). Data after EOI (camera
/// trailers) is allowed; it is never decoded or stored.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2;
    loop {
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else { return false };
        match marker {
            0xFF => at += 1,
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let Some(&[high, low]) = bytes.get(at + 2..at + 4).and_then(|s| <&[u8; 2]>::try_from(s).ok()) else {
                    return false;
                };
                let length = usize::from(u16::from_be_bytes([high, low]));
                if length < 2 {
                    return false;
                }
                at += 2 + length;
                if marker == 0xDA {
                    at = match skip_entropy_coded(bytes, at) {
                        Some(next) => next,
                        None => return false,
                    };
                }
            }
        }
    }
}

/// The offset of the first marker after entropy-coded data starting at `at`.
fn skip_entropy_coded(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        match (bytes.get(at)?, bytes.get(at + 1)?) {
            (0xFF, 0x00 | 0xD0..=0xD7) => at += 2,
            (0xFF, _) => return Some(at),
            _ => at += 1,
        }
    }
}

fn image_format(format: AvatarFormat) -> ImageFormat {
    match format {
        AvatarFormat::Png => ImageFormat::Png,
        AvatarFormat::Jpeg => ImageFormat::Jpeg,
        AvatarFormat::WebP => ImageFormat::WebP,
    }
}

/// Decoder failures, as the client's problem. Limits can only trip on what the header
/// declares, which [`process`] checks first, so they are reported like a corrupt file.
fn rejection(error: ImageError) -> ImageRejected {
    match error {
        ImageError::Unsupported(_) => ImageRejected::UnsupportedFormat,
        _ => ImageRejected::Corrupt,
    }
}

/// Scales down to fit `max_side` × `max_side`, keeping the aspect ratio. Very large images are
/// first reduced with a fast integer box filter to twice the target, so that the Lanczos pass
/// that gives the final quality works on at most ~1 megapixel.
fn fit(image: DynamicImage, max_side: u32) -> DynamicImage {
    if image.width() <= max_side && image.height() <= max_side {
        return image;
    }
    let coarse = max_side.saturating_mul(2);
    let image = if image.width() > coarse.saturating_mul(2) || image.height() > coarse.saturating_mul(2) {
        image.thumbnail(coarse, coarse)
    } else {
        image
    };
    image.resize(max_side, max_side, FilterType::Lanczos3)
}

/// Whether any pixel is not fully opaque.
fn uses_transparency(image: &DynamicImage) -> bool {
    image.color().has_alpha() && image.to_rgba8().pixels().any(|pixel| pixel.0[3] < u8::MAX)
}

fn encode(image: &DynamicImage) -> Result<ProcessedImage, ImageRejected> {
    let (width, height) = (image.width(), image.height());
    let mut bytes = Vec::new();
    let (format, written) = if uses_transparency(image) {
        let rgba = image.to_rgba8();
        let encoder = PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, PngFilter::Adaptive);
        (AvatarFormat::Png, encoder.write_image(rgba.as_raw(), width, height, ExtendedColorType::Rgba8))
    } else {
        let rgb = image.to_rgb8();
        let encoder = JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
        (AvatarFormat::Jpeg, encoder.write_image(rgb.as_raw(), width, height, ExtendedColorType::Rgb8))
    };
    // Encoding a decoded, in-memory image into a Vec has no failure a client could cause; if
    // it ever fails, the upload is refused rather than the server erring.
    written.map_err(|e| {
        tracing::error!(error = %e, width, height, "re-encoding a decoded avatar failed");
        ImageRejected::Corrupt
    })?;
    let sha256_hex = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok(ProcessedImage { bytes, format, sha256_hex, width, height })
}

/// The [`AvatarProcessor`] port on [`process`]: each upload is processed on tokio's blocking
/// pool, at most `concurrency` at once (a 40-megapixel decode holds a few hundred MB), the
/// others waiting their turn.
#[derive(Debug, Clone)]
pub struct ImageAvatarProcessor {
    limits: Limits,
    permits: Arc<Semaphore>,
}

impl ImageAvatarProcessor {
    /// A processor with `limits`, running at most `concurrency` (at least one) uploads at once.
    #[must_use]
    pub fn new(limits: Limits, concurrency: usize) -> Self {
        Self { limits, permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }
}

#[async_trait]
impl AvatarProcessor for ImageAvatarProcessor {
    #[tracing::instrument(level = "debug", skip_all, fields(upload_bytes = upload.len()))]
    async fn process(&self, upload: Vec<u8>) -> Result<ProcessedImage, ImageRejected> {
        let Ok(_permit) = self.permits.acquire().await else {
            tracing::error!("the avatar processing semaphore is closed");
            return Err(ImageRejected::Corrupt);
        };
        let limits = self.limits;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            process(&upload, limits)
        })
        .await
        .unwrap_or_else(|e| {
            // A decoder panic on some input is a bug to fix (the fuzz target hunts for them),
            // but it must not turn into a 500 or take a worker down.
            tracing::error!(error = %e, "avatar processing panicked");
            Err(ImageRejected::Corrupt)
        })
    }
}

pub mod colour;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
