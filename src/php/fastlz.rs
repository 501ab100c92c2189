//! FastLZ decompression (levels 1 and 2), for the values php-memcached compresses with its
//! default compression. php-memcached's FastLZ writes level 1 below 64 KiB and level 2 from
//! there; the level is in the top three bits of the first byte.
//!
//! A block is a series of instructions, each starting with a control byte:
//!
//! - `000nnnnn`: a literal run of `n + 1` bytes, which follow.
//! - `lllooooo` with `lll` from 1 to 6: a match of `lll + 2` bytes at distance `o << 8 | next
//!   byte`, plus one. `lll = 7` reads the length from the next byte (level 1: one byte added to
//!   6; level 2: bytes added while they are 255). Level 2 adds a far form: a distance byte of 255
//!   with `o = 31` means two more bytes, a 16-bit distance past 8191.
//!
//! Copies go forward byte by byte, so a match may overlap the bytes it writes (runs).

/// Level 2's distances past this take the far form.
const MAX_L2_DISTANCE: usize = 8191;

/// Inflates one FastLZ block into exactly `len` bytes (the length php-memcached stores in front
/// of it). `len` is the caller's to bound: no more is ever allocated.
pub(crate) fn decompress(input: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let Some(&first) = input.first() else {
        return Err("an empty FastLZ block".into());
    };
    let level = (first >> 5) + 1;
    if level > 2 {
        return Err(format!("FastLZ level {level}: only levels 1 and 2 exist"));
    }
    let mut reader = Reader { input, at: 1 };
    let mut out = Vec::with_capacity(len);
    let mut ctrl = usize::from(first & 31);
    loop {
        if ctrl < 32 {
            let run = ctrl + 1;
            let literal = reader.take(run, "a literal run")?;
            check_room(&out, run, len)?;
            out.extend_from_slice(literal);
        } else {
            let (count, distance) = reader.read_match(level, ctrl)?;
            if distance > out.len() {
                return Err(format!(
                    "a match {distance} bytes back, {} bytes into the output",
                    out.len()
                ));
            }
            check_room(&out, count, len)?;
            let start = out.len() - distance;
            if distance >= count {
                out.extend_from_within(start..start + count);
            } else {
                for i in start..start + count {
                    out.push(out[i]);
                }
            }
        }
        match reader.next() {
            Some(byte) => ctrl = usize::from(byte),
            None => break,
        }
    }
    if out.len() != len {
        return Err(format!(
            "inflates to {} bytes, not the {len} its length prefix says",
            out.len()
        ));
    }
    Ok(out)
}

fn check_room(out: &[u8], more: usize, len: usize) -> Result<(), String> {
    if out.len() + more > len {
        return Err(format!(
            "inflates to more than the {len} bytes its length prefix says"
        ));
    }
    Ok(())
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<u8> {
        let byte = *self.input.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn byte(&mut self, what: &str) -> Result<usize, String> {
        self.next()
            .map(usize::from)
            .ok_or_else(|| format!("the block ends inside {what}"))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let bytes = self
            .input
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("the block ends inside {what}"))?;
        self.at += n;
        Ok(bytes)
    }

    /// A match's length and distance, after its control byte.
    fn read_match(&mut self, level: u8, ctrl: usize) -> Result<(usize, usize), String> {
        let mut count = (ctrl >> 5) - 1;
        let high = (ctrl & 31) << 8;
        if count == 6 {
            if level == 1 {
                count += self.byte("a match length")?;
            } else {
                loop {
                    let more = self.byte("a match length")?;
                    count += more;
                    if more != 255 {
                        break;
                    }
                }
            }
        }
        let low = self.byte("a match distance")?;
        let mut distance = high + low + 1;
        if level == 2 && low == 255 && high == 31 << 8 {
            let far = (self.byte("a far distance")? << 8) + self.byte("a far distance")?;
            distance = far + MAX_L2_DISTANCE + 1;
        }
        Ok((count + 3, distance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes php-memcached 3.2.0 stored for `str_repeat('a', 2000)` (flags 80), less the
    /// 4-byte length prefix `d0 07 00 00`.
    const AAA_2000: &[u8] = b"\x01aa\xe0\xfd\x01\xe0\xfd\x01\xe0\xfd\x01\xe0\xfd\x01\xe0\xfd\x01\
        \xe0\xfd\x01\xe0\xfd\x01\xe0\x98\x01\x02aaa";

    #[test]
    fn inflates_a_php_level_1_block() {
        assert_eq!(decompress(AAA_2000, 2000).unwrap(), vec![b'a'; 2000]);
    }

    #[test]
    fn inflates_php_blocks_of_both_levels() {
        // tests/php/fastlz_fixtures.php: the text below (level 1), and 70000 bytes that repeat
        // every 12288 (level 2, with matches farther than 8191 bytes), each stored by
        // php-memcached with its length prefix.
        for (name, block, expected) in [
            (
                "level 1",
                &include_bytes!("fastlz/level1.bin")[..],
                fixture_text(),
            ),
            (
                "level 2",
                &include_bytes!("fastlz/level2.bin")[..],
                lcg(70000),
            ),
        ] {
            let (prefix, block) = block.split_at(4);
            let len = u32::from_le_bytes(prefix.try_into().unwrap()) as usize;
            assert_eq!(len, expected.len(), "{name}");
            assert_eq!(block[0] >> 5, if name == "level 1" { 0 } else { 1 });
            assert_eq!(decompress(block, len).unwrap(), expected, "{name}");
        }
    }

    /// The text of `tests/php/fastlz_fixtures.php`'s level-1 value.
    fn fixture_text() -> Vec<u8> {
        let mut text = Vec::new();
        for i in 0..300 {
            text.extend_from_slice(format!("line {i}: the quick brown fox {}\n", i * i).as_bytes());
        }
        text
    }

    /// The bytes of `tests/php/fastlz_fixtures.php`'s level-2 value: 12288 bytes of a linear
    /// congruential generator, repeated, so that its matches are 12288 bytes back (the far form).
    fn lcg(len: usize) -> Vec<u8> {
        const PERIOD: usize = 12288;
        let mut state: u32 = 12345;
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            if i < PERIOD {
                state = state.wrapping_mul(1103515245).wrapping_add(12345);
                out.push((state >> 16) as u8);
            } else {
                out.push(out[i - PERIOD]);
            }
        }
        out
    }

    #[test]
    fn refuses_corrupt_blocks() {
        let short = decompress(&AAA_2000[..AAA_2000.len() - 2], 2000).unwrap_err();
        assert!(short.contains("ends inside"), "{short}");
        let long = decompress(AAA_2000, 1999).unwrap_err();
        assert!(long.contains("more than the 1999"), "{long}");
        let wrong = decompress(AAA_2000, 2001).unwrap_err();
        assert!(wrong.contains("not the 2001"), "{wrong}");
        // A match before the first byte.
        let back = decompress(b"\x00a\x20\x05", 10).unwrap_err();
        assert!(back.contains("6 bytes back"), "{back}");
        assert!(decompress(b"", 1).is_err());
        assert!(decompress(b"\x60abc", 3).unwrap_err().contains("level 4"));
    }

    #[test]
    fn level_2_reads_long_lengths_and_far_distances() {
        // Literal "ab", then a level-2 match of 3 + 6 + 255 + 1 bytes one byte back.
        let block = [0x21, b'a', b'b', 0xe0, 255, 1, 0];
        let out = decompress(&block, 2 + 265).unwrap();
        assert!(out[2..].iter().all(|&b| b == b'b'));
        // The far form: distance byte 255 with the top bits all set, then 16 bits past 8191.
        let mut reader = Reader {
            input: &[255, 0x00, 0x01],
            at: 0,
        };
        assert_eq!(reader.read_match(2, 0x3f).unwrap(), (3, 8193));
    }
}
