//! Making thumbnails: which size a request gets, and rendering it (still or animated) from the
//! original, bounded by a pixel limit. Runs on a blocking thread: decoding is CPU work.

use image::{
    AnimationDecoder, DynamicImage, Frame, ImageDecoder, ImageFormat, ImageReader, Limits,
    codecs::{gif::GifDecoder, gif::GifEncoder, gif::Repeat, jpeg::JpegEncoder, png::PngDecoder, webp::WebPDecoder},
    metadata::Orientation,
};
use myelin_core::config::{ThumbnailMethod, ThumbnailSize};
use std::{fs::File, io::BufReader, path::Path};

/// The output box of a request: the key thumbnails are cached under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub width: u32,
    pub height: u32,
    pub method: ThumbnailMethod,
}

/// Picks the smallest configured size at least as large as the request (else the largest).
/// `scale` fits the original into that box; `crop` keeps the requested aspect ratio, as large as
/// the box allows.
pub fn plan(sizes: &[ThumbnailSize], width: u32, height: u32, method: ThumbnailMethod) -> Plan {
    let (width, height) = (width.max(1), height.max(1));
    let area = |s: &&ThumbnailSize| u64::from(s.width) * u64::from(s.height);
    let target = sizes
        .iter()
        .filter(|s| s.width >= width && s.height >= height)
        .min_by_key(area)
        .or_else(|| sizes.iter().max_by_key(area))
        .map_or((width, height), |s| (s.width, s.height));
    match method {
        ThumbnailMethod::Scale => Plan { width: target.0, height: target.1, method },
        ThumbnailMethod::Crop => {
            let k = f64::min(f64::from(target.0) / f64::from(width), f64::from(target.1) / f64::from(height));
            let scaled = |v: u32| ((f64::from(v) * k).round() as u32).max(1);
            Plan { width: scaled(width), height: scaled(height), method }
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Rendered {
    /// The original is no larger than asked for: serve it as it is.
    Original,
    Image {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

#[derive(Debug, PartialEq)]
pub enum RenderError {
    NotAnImage,
    TooLarge,
    Failed(String),
}

impl From<image::ImageError> for RenderError {
    fn from(e: image::ImageError) -> Self {
        match e {
            image::ImageError::Limits(_) => RenderError::TooLarge,
            image::ImageError::Unsupported(_) => RenderError::NotAnImage,
            image::ImageError::IoError(e) => RenderError::Failed(e.to_string()),
            // A truncated or corrupt file is the uploader's problem, not ours.
            other => RenderError::Failed(format!("cannot decode the image: {other}")),
        }
    }
}

impl From<std::io::Error> for RenderError {
    fn from(e: std::io::Error) -> Self {
        RenderError::Failed(e.to_string())
    }
}

/// Frames an animated thumbnail may hold at most, and pixels over all its source frames.
const MAX_FRAMES: usize = 1000;

pub fn render(path: &Path, plan: &Plan, animated: bool, max_pixels: u64) -> Result<Rendered, RenderError> {
    let mut reader = open(path)?;
    let format = reader.format().ok_or(RenderError::NotAnImage)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) {
        return Err(RenderError::NotAnImage);
    }
    reader.limits(limits(max_pixels));
    // Only the header is read so far: refuse a huge image before decoding any of it.
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(RenderError::TooLarge);
    }
    if animated && format != ImageFormat::Jpeg {
        if let Some(rendered) = render_animated(path, format, plan, max_pixels)? {
            return Ok(rendered);
        }
        // Not animated after all: decode the still image from the start again.
        let mut reader = open(path)?;
        reader.limits(limits(max_pixels));
        decoder = reader.into_decoder()?;
    }
    let orientation = decoder.orientation()?;
    let upright = if turns_sideways(orientation) { (height, width) } else { (width, height) };
    let Some(output) = output_size(plan, upright.0, upright.1) else {
        return Ok(Rendered::Original);
    };
    let reduced = match format {
        ImageFormat::Jpeg => decode_jpeg_reduced(path, (width, height), upright, output),
        _ => None,
    };
    let mut image = match reduced {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder)?,
    };
    image.apply_orientation(orientation);
    let thumbnail = resize(&image, plan.method, output);
    let mut bytes = Vec::new();
    let content_type = if format == ImageFormat::Jpeg {
        JpegEncoder::new_with_quality(&mut bytes, 80).encode_image(&DynamicImage::ImageRgb8(thumbnail.to_rgb8()))?;
        "image/jpeg"
    } else {
        thumbnail.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)?;
        "image/png"
    };
    Ok(Rendered::Image { bytes, content_type })
}

/// Whether applying this EXIF orientation swaps width and height.
fn turns_sideways(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// Decodes a JPEG at a reduced DCT scale (1/2, 1/4 or 1/8) when the thumbnail is that much
/// smaller: the decoder then skips most of the inverse transform and the resize has a fraction
/// of the pixels, which makes a small thumbnail of a large photo several times cheaper. Keeps
/// twice the output's resolution so that the final resize still filters properly. None when no
/// reduction applies or this decoder cannot handle the file: the caller decodes it in full.
fn decode_jpeg_reduced(
    path: &Path,
    (width, height): (u32, u32),
    upright: (u32, u32),
    (out_w, out_h): (u32, u32),
) -> Option<DynamicImage> {
    let factor = f64::max(f64::from(out_w) / f64::from(upright.0), f64::from(out_h) / f64::from(upright.1)) * 2.0;
    if factor >= 0.5 {
        return None;
    }
    let wanted = |v: u32| u16::try_from((f64::from(v) * factor).ceil() as u32).ok();
    let mut decoder = jpeg_decoder::Decoder::new(BufReader::new(File::open(path).ok()?));
    // The pixel limit was checked on the header; this only guards against a lying header.
    decoder.set_max_decoding_buffer_size(usize::try_from(u64::from(width) * u64::from(height) * 4).ok()?);
    decoder.read_info().ok()?;
    let (w, h) = decoder.scale(wanted(width)?, wanted(height)?).ok()?;
    let (w, h) = (u32::from(w), u32::from(h));
    if (w, h) == (width, height) {
        return None;
    }
    let pixels = decoder.decode().ok()?;
    let format = decoder.info()?.pixel_format;
    match format {
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        // CMYK and 16-bit lossless JPEGs are rare: the full decoder converts them.
        _ => None,
    }
}

fn open(path: &Path) -> Result<ImageReader<BufReader<File>>, RenderError> {
    Ok(ImageReader::new(BufReader::new(File::open(path)?)).with_guessed_format()?)
}

fn limits(max_pixels: u64) -> Limits {
    let mut limits = Limits::default();
    // RGBA at 16 bits per channel, plus room for one conversion.
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    limits
}

/// The size to render at, or None when the original is no larger than that.
fn output_size(plan: &Plan, width: u32, height: u32) -> Option<(u32, u32)> {
    let (w, h, pw, ph) = (f64::from(width), f64::from(height), f64::from(plan.width), f64::from(plan.height));
    let (out_w, out_h) = match plan.method {
        ThumbnailMethod::Scale => {
            let s = f64::min(pw / w, ph / h);
            if s >= 1.0 {
                return None;
            }
            (w * s, h * s)
        }
        // Never upscale: an original smaller than the box is served as it is, and one that is
        // smaller in one direction only gets a crop box shrunk to fit inside it.
        ThumbnailMethod::Crop => {
            if width <= plan.width && height <= plan.height {
                return None;
            }
            let s = f64::min(1.0, f64::min(w / pw, h / ph));
            (pw * s, ph * s)
        }
    };
    let out = ((out_w.round() as u32).max(1), (out_h.round() as u32).max(1));
    (out != (width, height)).then_some(out)
}

fn resize(image: &DynamicImage, method: ThumbnailMethod, (out_w, out_h): (u32, u32)) -> DynamicImage {
    match method {
        ThumbnailMethod::Scale => image.thumbnail_exact(out_w, out_h),
        ThumbnailMethod::Crop => {
            let (w, h) = (image.width(), image.height());
            let aspect = f64::from(out_w) / f64::from(out_h);
            let (cw, ch) = if f64::from(w) / f64::from(h) > aspect {
                (((f64::from(h) * aspect).round() as u32).clamp(1, w), h)
            } else {
                (w, ((f64::from(w) / aspect).round() as u32).clamp(1, h))
            };
            if (cw, ch) == (w, h) {
                // Same aspect already: cropping would only copy every pixel.
                return image.thumbnail_exact(out_w, out_h);
            }
            image.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch).thumbnail_exact(out_w, out_h)
        }
    }
}

/// An animated GIF thumbnail of an animated GIF, WebP or APNG; None when the source is not
/// animated (or too long to animate within the pixel budget): the caller renders a still.
fn render_animated(
    path: &Path,
    format: ImageFormat,
    plan: &Plan,
    max_pixels: u64,
) -> Result<Option<Rendered>, RenderError> {
    let reader = || -> Result<BufReader<File>, RenderError> { Ok(BufReader::new(File::open(path)?)) };
    let frames = match format {
        ImageFormat::Gif => GifDecoder::new(reader()?)?.into_frames(),
        ImageFormat::WebP => {
            let decoder = WebPDecoder::new(reader()?)?;
            if !decoder.has_animation() {
                return Ok(None);
            }
            decoder.into_frames()
        }
        ImageFormat::Png => {
            let decoder = PngDecoder::new(reader()?)?;
            if !decoder.is_apng()? {
                return Ok(None);
            }
            decoder.apng()?.into_frames()
        }
        _ => return Ok(None),
    };
    let budget = max_pixels.saturating_mul(4);
    let mut spent = 0u64;
    let mut output = None;
    let mut thumbnails = Vec::new();
    for frame in frames {
        let frame = frame?;
        let delay = frame.delay();
        let buffer = frame.into_buffer();
        spent += u64::from(buffer.width()) * u64::from(buffer.height());
        if spent > budget || thumbnails.len() >= MAX_FRAMES {
            return Ok(None);
        }
        let size = match output {
            Some(size) => size,
            None => match output_size(plan, buffer.width(), buffer.height()) {
                Some(size) => *output.insert(size),
                None => return Ok(Some(Rendered::Original)),
            },
        };
        let small = resize(&DynamicImage::ImageRgba8(buffer), plan.method, size).to_rgba8();
        thumbnails.push(Frame::from_parts(small, 0, 0, delay));
    }
    if thumbnails.len() < 2 {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder.set_repeat(Repeat::Infinite)?;
        encoder.encode_frames(thumbnails)?;
    }
    Ok(Some(Rendered::Image { bytes, content_type: "image/gif" }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_core::config::MediaConfig;

    fn sizes() -> Vec<ThumbnailSize> {
        MediaConfig::default().thumbnail_sizes
    }

    #[test]
    fn plans() {
        let p = |w, h, m| {
            let plan = plan(&sizes(), w, h, m);
            (plan.width, plan.height)
        };
        use ThumbnailMethod::*;
        assert_eq!(p(32, 32, Crop), (32, 32));
        assert_eq!(p(50, 50, Crop), (96, 96));
        assert_eq!(p(100, 50, Crop), (320, 160));
        assert_eq!(p(300, 200, Scale), (320, 240));
        assert_eq!(p(600, 600, Scale), (800, 600));
        assert_eq!(p(2000, 2000, Scale), (800, 600));
    }

    #[test]
    fn output_sizes_never_upscale() {
        let scale = Plan { width: 320, height: 240, method: ThumbnailMethod::Scale };
        assert_eq!(output_size(&scale, 2000, 1000), Some((320, 160)));
        assert_eq!(output_size(&scale, 300, 200), None);
        let crop = Plan { width: 96, height: 96, method: ThumbnailMethod::Crop };
        assert_eq!(output_size(&crop, 2000, 1000), Some((96, 96)));
        assert_eq!(output_size(&crop, 50, 200), Some((50, 50)));
        assert_eq!(output_size(&crop, 96, 96), None);
        assert_eq!(output_size(&crop, 20, 10), None);
    }
}
