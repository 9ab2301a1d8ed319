//! A 4:2:0 frame as packed 4:2:2 (YUY2, UYVY), as a capture card would send it: each
//! chroma row used for both of its luma rows, so converting it back to 4:2:0 must give
//! exactly the planes it was made of. Shared by tests/colour.rs and benches/scoring.rs.

/// Planes `y` (`w` × `h`), `u` and `v` (`w/2` × `h/2`, tightly packed) as `format`
/// (`"YUY2"` or `"UYVY"`), `2 w h` bytes.
pub fn packed_422(y: &[u8], u: &[u8], v: &[u8], w: usize, h: usize, format: &str) -> Vec<u8> {
    let cw = w / 2;
    let mut out = Vec::with_capacity(w * h * 2);
    for row in 0..h {
        for cx in 0..cw {
            let (y0, y1) = (y[row * w + 2 * cx], y[row * w + 2 * cx + 1]);
            let (cb, cr) = (u[row / 2 * cw + cx], v[row / 2 * cw + cx]);
            out.extend_from_slice(&match format {
                "YUY2" => [y0, cb, y1, cr],
                _ => [cb, y0, cr, y1],
            });
        }
    }
    out
}
