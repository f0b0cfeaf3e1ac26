//! Writing a result without allocating when the value is already in shape: a stack buffer
//! for short ASCII output, and the check that hands the input back when it matches.

use crate::engine::value::Value;

/// A small stack buffer for ASCII output (dates, E.164), so the result can be compared with
/// the input before deciding to allocate. Pushes past the end are dropped; callers bound
/// their output well below the capacity.
pub(super) struct Buf {
    bytes: [u8; 48],
    len: usize,
}

impl Buf {
    pub(super) fn new() -> Self {
        Self { bytes: [0; 48], len: 0 }
    }

    pub(super) fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    pub(super) fn push_str(&mut self, s: &str) {
        s.bytes().for_each(|b| self.push(b));
    }

    /// Zero-padded decimal of at least `width` digits.
    pub(super) fn push_num(&mut self, mut n: u32, width: usize) {
        let mut tmp = [0u8; 10];
        let mut i = 0;
        while i < tmp.len() && (n > 0 || i < width) {
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            i += 1;
        }
        tmp[..i].iter().rev().for_each(|&b| self.push(b));
    }

    pub(super) fn as_str(&self) -> &str {
        // Only ASCII is ever pushed, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Hands back `v` itself when it already is exactly `out`, so clean data costs no allocation.
pub(super) fn reuse_or_new(v: Value, out: &str) -> Value {
    match v {
        Value::Text(s) if s == out => Value::Text(s),
        _ => Value::Text(out.to_owned()),
    }
}
