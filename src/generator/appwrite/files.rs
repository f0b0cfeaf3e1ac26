//! Small real files for the legacy `files` table: valid PNG, JPEG, PDF and GIF files and plain
//! text, built byte by byte (no image library), so a MIME detector reading magic numbers sees
//! what a real upload would show, and a viewer opens them.

use super::super::rng::Rng;

/// CRC-32 (IEEE), as PNG chunks need it.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xedb8_8320 & mask);
            }
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// A `width` x `height` RGB PNG with pixels from `rng`, its image data in stored (uncompressed)
/// deflate blocks: about `3 * width * height` bytes, so the size is easy to aim at.
pub fn png(rng: &mut Rng, width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    let row = 1 + 3 * width as usize;
    let mut raw = vec![0u8; row * height as usize];
    for line in raw.chunks_mut(row) {
        line[0] = 0; // filter: none
        rng.fill(&mut line[1..]);
    }
    // zlib header, stored blocks of at most 65535 bytes, Adler-32 of the raw data.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A baseline 8x8 grey JPEG (one block, every coefficient zero), with `comment` in a COM
/// segment so two files differ; decoders show a flat grey square.
pub fn jpeg(comment: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xd8];
    // APP0 JFIF 1.01, no density units, 1:1.
    out.extend_from_slice(&[
        0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
    ]);
    let text = comment.as_bytes();
    let text = &text[..text.len().min(60_000)];
    out.extend_from_slice(&[0xff, 0xfe]);
    out.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(text);
    // DQT: table 0, every quantiser 1.
    out.extend_from_slice(&[0xff, 0xdb, 0x00, 0x43, 0x00]);
    out.extend_from_slice(&[1u8; 64]);
    // SOF0: 8-bit, 8x8, one component (id 1, 1x1 sampling, table 0).
    out.extend_from_slice(&[
        0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00,
    ]);
    // DHT: DC table 0 and AC table 0, each one code of length 1 ("0") for symbol 0x00 (DC
    // difference 0; AC end of block).
    for class in [0x00u8, 0x10] {
        out.extend_from_slice(&[0xff, 0xc4, 0x00, 0x14, class, 1]);
        out.extend_from_slice(&[0u8; 15]);
        out.push(0x00);
    }
    // SOS: one component, tables 0/0, spectral 0..63.
    out.extend_from_slice(&[0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00]);
    // The block: DC "0", EOB "0", padded with ones.
    out.push(0b0011_1111);
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

/// A one-page PDF showing `lines` of text, with a correct cross-reference table.
pub fn pdf(lines: &[String]) -> Vec<u8> {
    let mut stream = String::from("BT /F1 11 Tf 72 760 Td 14 TL\n");
    for l in lines {
        let escaped = l.replace('\\', "\\\\").replace('(', "\\(").replace(')', "\\)");
        stream.push_str(&format!("({escaped}) '\n"));
    }
    stream.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!("<< /Length {} >>\nstream\n{stream}endstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A 1x1 transparent GIF89a with `comment` in a comment extension (so two files differ).
pub fn gif(comment: &str) -> Vec<u8> {
    let mut out = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00".to_vec();
    // Comment extension: sub-blocks of at most 255 bytes, then a terminator.
    out.extend_from_slice(&[0x21, 0xfe]);
    for block in comment.as_bytes().chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    // Graphic control (transparent colour 0), the image, its LZW data, the trailer.
    out.extend_from_slice(b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_adler_match_their_reference_values() {
        // Reference values of the standard check string.
        assert_eq!(crc32(&[b"123456789"]), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn files_start_with_their_magic_numbers_and_end_properly() {
        let mut rng = Rng::new(1, 2, 3);
        let p = png(&mut rng, 4, 3);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n") && p.ends_with(b"IEND\xaeB`\x82"));
        // 13-byte header chunk right after the signature.
        assert_eq!(&p[8..16], b"\x00\x00\x00\x0dIHDR");
        let j = jpeg("hello");
        assert!(j.starts_with(&[0xff, 0xd8, 0xff, 0xe0]) && j.ends_with(&[0xff, 0xd9]));
        let d = pdf(&["Referral (cardiology)".into()]);
        let text = String::from_utf8_lossy(&d);
        assert!(d.starts_with(b"%PDF-1.4") && text.ends_with("%%EOF\n"));
        // startxref points at the xref table.
        let at: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            d[at..].starts_with(b"xref\n0 6\n"),
            "{}",
            String::from_utf8_lossy(&d[at..])
        );
        let g = gif("x");
        assert!(g.starts_with(b"GIF89a") && g.ends_with(b";"));
        assert_ne!(gif("x"), gif("y"));
    }

    #[test]
    fn a_large_png_spans_several_stored_blocks_with_the_right_lengths() {
        let mut rng = Rng::new(1, 2, 3);
        let p = png(&mut rng, 200, 120); // 72 120 bytes of raw data: two stored blocks
        let idat_len = u32::from_be_bytes([p[33], p[34], p[35], p[36]]) as usize;
        assert_eq!(&p[37..41], b"IDAT");
        let z = &p[41..41 + idat_len];
        let raw_len = 120 * (1 + 3 * 200);
        // 2 (zlib) + per block 5 + 4 (Adler-32).
        assert_eq!(z.len(), 2 + raw_len + 5 * 2 + 4);
        assert_eq!(z[2], 0, "first block is not final");
        assert_eq!(u16::from_le_bytes([z[3], z[4]]), 65_535);
    }
}
