//! The little DER this crate needs: reading and writing the structures of
//! PKCS#8 (RFC 5208/5958) and PBES2 (RFC 8018). Parsing only; no cryptography.

/// DER tags used here.
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER")]
pub struct DerError;

/// A cursor over DER-encoded bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element of tag `tag` and returns its contents.
    pub fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (&found, rest) = self.rest.split_first().ok_or(DerError)?;
        if found != tag {
            return Err(DerError);
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(DerError);
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(DerError);
        }
        let (value, after) = rest.split_at(len);
        self.rest = after;
        Ok(value)
    }

    /// Reads a SEQUENCE and returns a reader over its contents.
    pub fn sequence(&mut self) -> Result<Reader<'a>, DerError> {
        self.read(SEQUENCE).map(Reader::new)
    }

    /// Reads a non-negative INTEGER that fits in a `u32`.
    pub fn small_uint(&mut self) -> Result<u32, DerError> {
        let bytes = self.read(INTEGER)?;
        let bytes = match bytes {
            [0, rest @ ..] => rest,
            [first, ..] if first & 0x80 != 0 => return Err(DerError),
            _ => bytes,
        };
        if bytes.len() > 4 {
            return Err(DerError);
        }
        Ok(bytes.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)))
    }
}

/// Encodes one element.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// Encodes a SEQUENCE of already-encoded elements.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// Encodes a non-negative INTEGER.
pub fn uint(n: u32) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut value = bytes[skip..].to_vec();
    if value[0] & 0x80 != 0 {
        value.insert(0, 0);
    }
    tlv(INTEGER, &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in [0u32, 1, 127, 128, 255, 256, 2048, 600_000, u32::MAX] {
            let encoded = uint(n);
            assert_eq!(Reader::new(&encoded).small_uint(), Ok(n), "{n}");
        }
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let value = vec![0xab; len];
            let encoded = tlv(OCTET_STRING, &value);
            let mut reader = Reader::new(&encoded);
            assert_eq!(reader.read(OCTET_STRING).unwrap(), &value[..]);
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            &[][..],
            &[0x04],
            &[0x04, 0x05, 1, 2],
            &[0x04, 0x80],
            &[0x04, 0x85, 1, 1, 1, 1, 1],
            &[0x02, 0x01],
        ] {
            assert_eq!(
                Reader::new(bad).read(OCTET_STRING).map(|_| ()),
                Err(DerError),
                "{bad:?}"
            );
        }
        assert_eq!(Reader::new(&[0x02, 0x01, 0x80]).small_uint(), Err(DerError));
        assert_eq!(
            Reader::new(&[0x02, 0x05, 1, 0, 0, 0, 0]).small_uint(),
            Err(DerError)
        );
    }
}
