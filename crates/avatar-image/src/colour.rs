//! Colour management: decoded pixels that an embedded ICC profile (PNG `iCCP`, JPEG `APP2`,
//! WebP `ICCP`) describes as something other than sRGB are converted to sRGB, because stored
//! avatars carry no profile and every viewer takes untagged pixels as sRGB. Without this, a
//! Display P3 or Adobe RGB photo would come out dull or shifted.
//!
//! A profile that cannot be read, that does not describe these pixels (an RGB profile on a
//! grey image, a CMYK profile) or that `moxcms` cannot build a transform from is ignored: the
//! pixels are taken as sRGB, as they were before profiles were honoured. Refusing such uploads
//! would reject photos every browser displays (broken profiles are common in the wild), and
//! the profile is dropped from the output either way.

use image::{DynamicImage, RgbImage, RgbaImage};
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformExecutor, TransformOptions};

/// Pixels converted per step: conversion works in place through a scratch buffer of this
/// many pixels, so a 40-megapixel photo never needs a second full-size copy.
const CHUNK_PIXELS: usize = 16 * 1024;

/// The largest difference, in 8-bit levels, between a transform's output and its input for
/// which the profile counts as sRGB already (rounding in the transform).
const IDENTITY_TOLERANCE: u8 = 1;

/// What [`to_srgb`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// No embedded profile: the pixels are sRGB by convention.
    Untagged,
    /// The profile is (equivalent to) sRGB: the pixels were kept as they are.
    AlreadySrgb,
    /// The pixels were converted from the profile's colour space to sRGB.
    Converted,
    /// The profile was unreadable, unsupported or did not match the pixels: ignored.
    Ignored,
}

type Transform = dyn TransformExecutor<u8> + Send + Sync;

/// A transform that was built and probed failed on the image's pixels (a bug in the colour
/// library, not something an upload should be able to cause).
#[derive(Debug, thiserror::Error)]
#[error("converting the pixels to sRGB failed: {0}")]
pub struct ConversionFailed(String);

/// Converts `image` from the colour space `icc` describes to sRGB (8 bits a channel, alpha
/// kept; a grey image with a grey profile becomes RGB). See the module documentation for
/// what happens to profiles that cannot be used.
///
/// # Errors
///
/// [`ConversionFailed`] when a transform that passed its probe fails on the pixels.
pub fn to_srgb(image: DynamicImage, icc: Option<&[u8]>) -> Result<(DynamicImage, Conversion), ConversionFailed> {
    Ok(match icc {
        None => (image, Conversion::Untagged),
        Some(icc) => convert(image, icc)?,
    })
}

fn convert(image: DynamicImage, icc: &[u8]) -> Result<(DynamicImage, Conversion), ConversionFailed> {
    let source = match ColorProfile::new_from_slice(icc) {
        Ok(profile) => profile,
        Err(e) => {
            tracing::info!(error = ?e, "ignoring an unreadable embedded ICC profile; pixels taken as sRGB");
            return Ok((image, Conversion::Ignored));
        }
    };
    let image_is_grey = !image.color().has_color();
    let has_alpha = image.color().has_alpha();
    let (source_layout, target_layout) = match (source.color_space, image_is_grey, has_alpha) {
        (DataColorSpace::Rgb, false, false) => (Layout::Rgb, Layout::Rgb),
        (DataColorSpace::Rgb, false, true) => (Layout::Rgba, Layout::Rgba),
        (DataColorSpace::Gray, true, false) => (Layout::Gray, Layout::Rgb),
        (DataColorSpace::Gray, true, true) => (Layout::GrayAlpha, Layout::Rgba),
        (space, _, _) => {
            tracing::info!(?space, colour = ?image.color(), "ignoring an embedded ICC profile that does not describe the pixels");
            return Ok((image, Conversion::Ignored));
        }
    };
    let srgb = ColorProfile::new_srgb();
    let transform: std::sync::Arc<Transform> =
        match source.create_transform_8bit(source_layout, &srgb, target_layout, TransformOptions::default()) {
            Ok(transform) => transform,
            Err(e) => {
                tracing::info!(error = ?e, "ignoring an embedded ICC profile no transform can be built from");
                return Ok((image, Conversion::Ignored));
            }
        };
    match is_identity(transform.as_ref(), source_layout) {
        Some(true) => return Ok((image, Conversion::AlreadySrgb)),
        Some(false) => {}
        None => return Ok((image, Conversion::Ignored)),
    }
    // 16-bit RGB(A) (PNG) is converted in its own buffer at full depth: going through 8 bits
    // would need a second full-size image, and the 40-megapixel bound counts on one.
    let image = match image {
        DynamicImage::ImageRgb16(pixels) if source_layout == Layout::Rgb => {
            match source.create_transform_16bit(Layout::Rgb, &srgb, Layout::Rgb, TransformOptions::default()) {
                Ok(wide) => {
                    return Ok((DynamicImage::ImageRgb16(in_place(pixels, 3, wide.as_ref())?), Conversion::Converted));
                }
                Err(_) => DynamicImage::ImageRgb16(pixels),
            }
        }
        DynamicImage::ImageRgba16(pixels) if source_layout == Layout::Rgba => {
            match source.create_transform_16bit(Layout::Rgba, &srgb, Layout::Rgba, TransformOptions::default()) {
                Ok(wide) => {
                    return Ok((DynamicImage::ImageRgba16(in_place(pixels, 4, wide.as_ref())?), Conversion::Converted));
                }
                Err(_) => DynamicImage::ImageRgba16(pixels),
            }
        }
        other => other,
    };
    let transform = transform.as_ref();
    let converted = match source_layout {
        Layout::Rgb => DynamicImage::ImageRgb8(in_place(image.into_rgb8(), 3, transform)?),
        Layout::Rgba => DynamicImage::ImageRgba8(in_place(image.into_rgba8(), 4, transform)?),
        Layout::Gray => {
            let grey = image.into_luma8();
            let mut out = RgbImage::new(grey.width(), grey.height());
            transform.transform(grey.as_raw(), &mut out).map_err(|e| ConversionFailed(format!("{e:?}")))?;
            DynamicImage::ImageRgb8(out)
        }
        _ => {
            let grey = image.into_luma_alpha8();
            let mut out = RgbaImage::new(grey.width(), grey.height());
            transform.transform(grey.as_raw(), &mut out).map_err(|e| ConversionFailed(format!("{e:?}")))?;
            DynamicImage::ImageRgba8(out)
        }
    };
    Ok((converted, Conversion::Converted))
}

/// Whether `transform` leaves 8-bit sRGB values as they are (within rounding): probes a grid
/// of colours (or every grey level) rather than comparing profile fields, so any profile
/// equivalent to sRGB, whatever its tags, is recognised. `None` when the transform fails.
fn is_identity(transform: &Transform, layout: Layout) -> Option<bool> {
    let levels: Vec<u8> = (0..=5).map(|i| i * 51).collect();
    let (input, expected): (Vec<u8>, Vec<u8>) = match layout {
        Layout::Rgb | Layout::Rgba => {
            let alpha = layout == Layout::Rgba;
            let mut input = Vec::new();
            for &r in &levels {
                for &g in &levels {
                    for &b in &levels {
                        input.extend_from_slice(&[r, g, b]);
                        if alpha {
                            input.push(u8::MAX);
                        }
                    }
                }
            }
            (input.clone(), input)
        }
        _ => {
            let alpha = layout == Layout::GrayAlpha;
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for level in 0..=u8::MAX {
                input.push(level);
                expected.extend_from_slice(&[level, level, level]);
                if alpha {
                    input.push(u8::MAX);
                    expected.push(u8::MAX);
                }
            }
            (input, expected)
        }
    };
    let mut output = vec![0u8; expected.len()];
    if let Err(e) = transform.transform(&input, &mut output) {
        tracing::info!(error = ?e, "ignoring an embedded ICC profile whose transform fails");
        return None;
    }
    Some(output.iter().zip(&expected).all(|(a, b)| a.abs_diff(*b) <= IDENTITY_TOLERANCE))
}

/// Converts RGB(A) pixels (8 or 16 bits a channel) in place, a chunk at a time through a
/// small scratch buffer.
fn in_place<T: Copy + Default, P: image::Pixel<Subpixel = T>>(
    mut image: image::ImageBuffer<P, Vec<T>>,
    channels: usize,
    transform: &(dyn TransformExecutor<T> + Send + Sync),
) -> Result<image::ImageBuffer<P, Vec<T>>, ConversionFailed> {
    let mut scratch = vec![T::default(); CHUNK_PIXELS * channels];
    for chunk in image.chunks_mut(CHUNK_PIXELS * channels) {
        let source = &mut scratch[..chunk.len()];
        source.copy_from_slice(chunk);
        transform.transform(source, chunk).map_err(|e| ConversionFailed(format!("{e:?}")))?;
    }
    Ok(image)
}
