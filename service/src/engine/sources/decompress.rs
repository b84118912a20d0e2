//! Compressed layers, read the way `gzip -d` and `zstd -d` read them: every gzip member
//! and every zstd frame, one after another. Layers written in chunks (eStargz,
//! zstd:chunked) are several members or frames, and a decoder that stops after the
//! first would cut the tar inside them short.

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// A gzip stream of any number of members.
pub fn gzip<R: Read>(reader: R) -> MultiGzDecoder<R> {
    MultiGzDecoder::new(reader)
}

/// A zstd stream of any number of frames; skippable frames (zstd:chunked keeps its
/// table of contents in one) are passed over.
pub struct ZstdFrames<R> {
    source: Pushback<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    /// Starts reading `reader`, refusing frames whose window exceeds `max_window`
    /// (a hostile frame may ask for any). A stream without a frame is an error.
    pub fn new(reader: R, max_window: u64) -> io::Result<Self> {
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(max_window);
        let mut frames = Self { source: Pushback { pending: None, inner: reader }, decoder, in_frame: false };
        if !frames.start_frame()? {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the zstd stream is empty"));
        }
        Ok(frames)
    }

    /// Moves to the next data frame, skipping skippable ones; `false` at the end.
    fn start_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.at_end()? {
                self.in_frame = false;
                return Ok(false);
            }
            match self.decoder.init(&mut self.source) {
                Ok(()) => {
                    self.in_frame = true;
                    return Ok(true);
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let wanted = u64::from(length);
                    let skipped = io::copy(&mut (&mut self.source).take(wanted), &mut io::sink())?;
                    if skipped != wanted {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "a skippable zstd frame is cut short",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.in_frame {
            while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(io::Error::other)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                self.start_frame()?;
            }
        }
        Ok(0)
    }
}

/// A reader that can tell whether it is at its end without losing the byte it read
/// to find out.
struct Pushback<R> {
    pending: Option<u8>,
    inner: R,
}

impl<R: Read> Pushback<R> {
    fn at_end(&mut self) -> io::Result<bool> {
        if self.pending.is_some() {
            return Ok(false);
        }
        let mut byte = [0u8; 1];
        loop {
            match self.inner.read(&mut byte) {
                Ok(0) => return Ok(true),
                Ok(_) => {
                    self.pending = Some(byte[0]);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read> Read for Pushback<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.pending.take(), buf.first_mut()) {
            (Some(byte), Some(first)) => {
                *first = byte;
                Ok(1)
            }
            (pending, _) => {
                self.pending = pending;
                self.inner.read(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn read_all(mut reader: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_zstd_frame_is_read_and_skippable_frames_are_passed_over() {
        let mut stream = zstd(b"first frame, ");
        // A skippable frame: magic 0x184D2A50, little-endian length, then that many bytes.
        stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        stream.extend_from_slice(&5u32.to_le_bytes());
        stream.extend_from_slice(b"toc!!");
        stream.extend_from_slice(&zstd(b"second frame"));
        let frames = ZstdFrames::new(stream.as_slice(), 1 << 20).expect("a frame");
        assert_eq!(read_all(frames).expect("decoded"), b"first frame, second frame");
    }

    #[test]
    fn broken_zstd_streams_are_errors() {
        assert!(ZstdFrames::new(b"".as_slice(), 1 << 20).is_err(), "empty");
        assert!(ZstdFrames::new(b"not zstd at all".as_slice(), 1 << 20).is_err(), "no magic");
        let mut cut = zstd(b"a frame");
        cut.extend_from_slice(&zstd(b"and half of another")[..6]);
        let frames = ZstdFrames::new(cut.as_slice(), 1 << 20).expect("the first frame starts");
        assert!(read_all(frames).is_err(), "a second frame cut short");
        let mut skippable = 0x184D_2A5Fu32.to_le_bytes().to_vec();
        skippable.extend_from_slice(&100u32.to_le_bytes());
        skippable.extend_from_slice(b"short");
        assert!(ZstdFrames::new(skippable.as_slice(), 1 << 20).is_err(), "a skippable frame cut short");
    }

    #[test]
    fn every_gzip_member_is_read() {
        let mut stream = gz(b"first member, ");
        stream.extend_from_slice(&gz(b"second member"));
        assert_eq!(read_all(gzip(stream.as_slice())).expect("decoded"), b"first member, second member");
    }
}
