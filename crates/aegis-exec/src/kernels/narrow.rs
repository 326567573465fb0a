//! Narrow element types: the 8-bit floats (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0), the 4-bit
//! float E2M1 and the 4- and 2-bit integers.
//!
//! They are *storage* types: held one element per byte (ONNX files pack the sub-byte ones two
//! or four to a byte; the loader unpacks them), converted by Cast, QuantizeLinear and
//! DequantizeLinear, and copied as bytes by data movement. No arithmetic runs on them.
//!
//! A byte holds the element's bit pattern (floats, right-aligned for E2M1) or its value
//! (integers: sign-extended for INT4/INT2, so an INT4 byte reads as the `i8` it is).
//! Conversions are exact: every narrow value is an f32, and [`Narrow::encode`] rounds once,
//! from f64, to nearest even, with the ONNX Cast tables for overflow, infinities and NaN.

use std::fmt;

/// A narrow element type (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Narrow {
    /// 8-bit float, 4 exponent bits (bias 7), no infinities, NaN = S.1111.111; max 448.
    F8E4M3FN,
    /// 8-bit float, 4 exponent bits (bias 8), no infinities or -0, NaN = 0x80; max 240.
    F8E4M3FNUZ,
    /// 8-bit float, 5 exponent bits (bias 15), IEEE-like with infinities; max 57344.
    F8E5M2,
    /// 8-bit float, 5 exponent bits (bias 16), no infinities or -0, NaN = 0x80; max 57344.
    F8E5M2FNUZ,
    /// 8-bit unsigned power of two `2^(e - 127)` (microscaling scales); 0xFF is NaN.
    F8E8M0,
    /// 4-bit float, 2 exponent bits (bias 1), 1 mantissa bit: 0, 0.5, 1, 1.5, 2, 3, 4, 6.
    F4E2M1,
    /// 4-bit signed integer, -8..=7.
    I4,
    /// 4-bit unsigned integer, 0..=15.
    U4,
    /// 2-bit signed integer, -2..=1.
    I2,
    /// 2-bit unsigned integer, 0..=3.
    U2,
}

/// How a value that does not fit a narrow float is converted (Cast's `saturate` and
/// `round_mode`; the other operators use the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NarrowMode {
    /// Out-of-range values (and infinities) become the largest finite value (true) or
    /// infinity / NaN as the type's table says (false). Only the 8-bit floats read it: E2M1
    /// has neither infinity nor NaN and always saturates.
    pub saturate: bool,
    /// Rounding to E8M0 (the other types round to nearest even).
    pub round: E8M0Round,
}

impl Default for NarrowMode {
    fn default() -> Self {
        NarrowMode {
            saturate: true,
            round: E8M0Round::Up,
        }
    }
}

/// Cast's `round_mode` for E8M0 (opset 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum E8M0Round {
    /// Away from zero: any fraction rounds the exponent up (the default).
    Up,
    /// Toward zero: the fraction is dropped.
    Down,
    /// To nearest, ties up.
    Nearest,
}

/// Exponent bits, mantissa bits, bias of a minifloat.
struct Format {
    exp: u32,
    man: u32,
    bias: i32,
}

impl Narrow {
    /// Every narrow type, in ONNX code order.
    pub const ALL: [Narrow; 10] = [
        Narrow::F8E4M3FN,
        Narrow::F8E4M3FNUZ,
        Narrow::F8E5M2,
        Narrow::F8E5M2FNUZ,
        Narrow::U4,
        Narrow::I4,
        Narrow::F4E2M1,
        Narrow::F8E8M0,
        Narrow::U2,
        Narrow::I2,
    ];

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            Narrow::F8E4M3FN => 17,
            Narrow::F8E4M3FNUZ => 18,
            Narrow::F8E5M2 => 19,
            Narrow::F8E5M2FNUZ => 20,
            Narrow::U4 => 21,
            Narrow::I4 => 22,
            Narrow::F4E2M1 => 23,
            Narrow::F8E8M0 => 24,
            Narrow::U2 => 25,
            Narrow::I2 => 26,
        }
    }

    /// The type of an ONNX code, if it is a narrow one.
    pub fn from_onnx(code: i32) -> Option<Narrow> {
        Narrow::ALL.into_iter().find(|n| n.onnx_code() == code)
    }

    /// Bits per element in an ONNX file (8, 4 or 2).
    pub fn bits(self) -> usize {
        match self {
            Narrow::I4 | Narrow::U4 | Narrow::F4E2M1 => 4,
            Narrow::I2 | Narrow::U2 => 2,
            _ => 8,
        }
    }

    /// A float type (as opposed to the integers).
    pub fn is_float(self) -> bool {
        !matches!(self, Narrow::I4 | Narrow::U4 | Narrow::I2 | Narrow::U2)
    }

    /// One of the four 8-bit floats Cast's `saturate` applies to.
    pub fn is_float8(self) -> bool {
        matches!(
            self,
            Narrow::F8E4M3FN | Narrow::F8E4M3FNUZ | Narrow::F8E5M2 | Narrow::F8E5M2FNUZ
        )
    }

    /// The value range of an integer type.
    pub fn int_range(self) -> Option<(i32, i32)> {
        match self {
            Narrow::I4 => Some((-8, 7)),
            Narrow::U4 => Some((0, 15)),
            Narrow::I2 => Some((-2, 1)),
            Narrow::U2 => Some((0, 3)),
            _ => None,
        }
    }

    fn format(self) -> Format {
        let (exp, man, bias) = match self {
            Narrow::F8E4M3FN => (4, 3, 7),
            Narrow::F8E4M3FNUZ => (4, 3, 8),
            Narrow::F8E5M2 => (5, 2, 15),
            Narrow::F8E5M2FNUZ => (5, 2, 16),
            // E2M1; the integers and E8M0 never reach the minifloat paths.
            _ => (2, 1, 1),
        };
        Format { exp, man, bias }
    }

    /// The largest finite value of a float type.
    fn max_finite(self) -> f64 {
        match self {
            Narrow::F8E4M3FN => 448.0,
            Narrow::F8E4M3FNUZ => 240.0,
            Narrow::F8E5M2 | Narrow::F8E5M2FNUZ => 57344.0,
            Narrow::F4E2M1 => 6.0,
            Narrow::F8E8M0 => f64::from(f32::MAX),
            _ => f64::from(self.int_range().map_or(0, |r| r.1)),
        }
    }

    /// The value of one stored byte (NaN for NaN codes; exact).
    pub fn decode(self, b: u8) -> f32 {
        match self {
            Narrow::I4 | Narrow::I2 => f32::from(b as i8),
            Narrow::U4 | Narrow::U2 => f32::from(b),
            Narrow::F8E8M0 => match b {
                0xFF => f32::NAN,
                e => (2f64.powi(i32::from(e) - 127)) as f32,
            },
            Narrow::F8E4M3FN if b & 0x7F == 0x7F => f32::NAN,
            Narrow::F8E4M3FNUZ | Narrow::F8E5M2FNUZ if b == 0x80 => f32::NAN,
            Narrow::F8E5M2 if b & 0x7C == 0x7C => match (b & 0x03, b & 0x80) {
                (0, 0) => f32::INFINITY,
                (0, _) => f32::NEG_INFINITY,
                _ => f32::NAN,
            },
            _ => {
                let Format { exp, man, bias } = self.format();
                let b = u32::from(b);
                let e = ((b >> man) & ((1 << exp) - 1)) as i32;
                let m = f64::from(b & ((1 << man) - 1));
                let mag = if e == 0 {
                    m * 2f64.powi(1 - bias - man as i32)
                } else {
                    (1.0 + m / f64::from(1u32 << man)) * 2f64.powi(e - bias)
                };
                let neg = (b >> (exp + man)) & 1 == 1;
                (if neg { -mag } else { mag }) as f32
            }
        }
    }

    /// Every byte's value: one table lookup per element in the conversion loops.
    pub fn table(self) -> [f32; 256] {
        std::array::from_fn(|b| self.decode(b as u8))
    }

    /// `v` as a stored byte. Floats round to nearest even (E8M0 as `mode.round` says) and
    /// overflow per `mode.saturate` and the ONNX Cast tables; integers take the truncated
    /// value's low bits, as integer narrowing does (NaN, infinities and values beyond i32
    /// give 0, as the x86 conversion the reference relies on does).
    pub fn encode(self, v: f64, mode: NarrowMode) -> u8 {
        if let Some((lo, _)) = self.int_range() {
            let i = if v > -2_147_483_649.0 && v < 2_147_483_648.0 {
                v.trunc() as i64
            } else {
                0
            };
            return self.wrap(i, lo < 0);
        }
        match self {
            Narrow::F8E8M0 => encode_e8m0(v as f32, mode),
            _ => self.encode_minifloat(v, mode.saturate || self == Narrow::F4E2M1),
        }
    }

    /// An integer `v` as a stored byte: integer types keep its low bits (two's complement,
    /// like every integer narrowing); float types round it as a float.
    pub fn encode_int(self, v: i64, mode: NarrowMode) -> u8 {
        match self.int_range() {
            Some((lo, _)) => self.wrap(v, lo < 0),
            None => self.encode(v as f64, mode),
        }
    }

    fn wrap(self, v: i64, signed: bool) -> u8 {
        let bits = self.bits() as u32;
        let low = (v as u64 & ((1 << bits) - 1)) as u8;
        if signed && low >> (bits - 1) == 1 {
            // Sign-extend: the byte reads as the negative i8.
            low | !((1u8 << bits) - 1)
        } else {
            low
        }
    }

    /// The NaN byte of a float type with sign `neg` (E2M1 has none: NaN becomes zero).
    fn nan(self, neg: bool) -> u8 {
        let s = if neg { 0x80 } else { 0 };
        match self {
            Narrow::F8E4M3FN => 0x7F | s,
            Narrow::F8E5M2 => 0x7E | s,
            Narrow::F4E2M1 => 0,
            _ => 0x80,
        }
    }

    fn encode_minifloat(self, v: f64, saturate: bool) -> u8 {
        let Format { exp, man, bias } = self.format();
        let neg = v.is_sign_negative();
        let sign = (neg as u8) << (exp + man);
        // FNUZ types have no -0: a negative value that rounds to zero is +0.
        let unsigned_zero = matches!(self, Narrow::F8E4M3FNUZ | Narrow::F8E5M2FNUZ);
        if v.is_nan() {
            return self.nan(neg);
        }
        let max = self.max_finite();
        let overflow = |sign: u8| -> u8 {
            if saturate {
                self.code_of(max) | sign
            } else if self == Narrow::F8E5M2 {
                0x7C | sign
            } else {
                self.nan(neg)
            }
        };
        let a = v.abs();
        if a.is_infinite() {
            return overflow(sign);
        }
        // The spacing of values at `a`: subnormal below 2^(1 - bias), else 2^(e - man).
        let min_normal_exp = 1 - bias;
        let e = if a == 0.0 {
            min_normal_exp
        } else {
            (a.log2().floor() as i32).max(min_normal_exp)
        };
        // log2 can be off by one next to a power of two: settle the exponent exactly.
        let e = if a >= 2f64.powi(e + 1) {
            e + 1
        } else if e > min_normal_exp && a < 2f64.powi(e) {
            e - 1
        } else {
            e
        };
        let q = 2f64.powi(e - man as i32);
        let r = (a / q).round_ties_even() * q;
        if r > max {
            return overflow(sign);
        }
        if r == 0.0 {
            return if unsigned_zero { 0 } else { sign };
        }
        self.code_of(r) | sign
    }

    /// The positive code of a representable magnitude `r`.
    fn code_of(self, r: f64) -> u8 {
        let Format { exp: _, man, bias } = self.format();
        let min_normal = 2f64.powi(1 - bias);
        if r < min_normal {
            return (r / 2f64.powi(1 - bias - man as i32)) as u8;
        }
        let e = r.log2().floor() as i32;
        let e = if r >= 2f64.powi(e + 1) {
            e + 1
        } else if r < 2f64.powi(e) {
            e - 1
        } else {
            e
        };
        let m = (r / 2f64.powi(e) - 1.0) * f64::from(1u32 << man);
        (((e + bias) as u8) << man) | m as u8
    }
}

/// f32 to E8M0 as the ONNX reference does it: the exponent field, rounded per `mode` on the
/// fraction bits; NaN and infinities become NaN (0xFF); saturation stops rounding at 0xFE.
/// The sign is ignored (negative inputs are undefined by the spec).
fn encode_e8m0(v: f32, mode: NarrowMode) -> u8 {
    let bits = v.to_bits();
    let e = (bits >> 23) & 0xFF;
    if e == 0xFF {
        return 0xFF;
    }
    let up = match mode.round {
        E8M0Round::Down => false,
        E8M0Round::Up => bits & 0x7F_FFFF != 0,
        E8M0Round::Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1F_FFFF != 0;
            g && (r || s || e > 0)
        }
    };
    let up = up && !(mode.saturate && e == 0xFE);
    (e + u32::from(up)) as u8
}

impl fmt::Display for Narrow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Narrow::F8E4M3FN => "f8e4m3fn",
            Narrow::F8E4M3FNUZ => "f8e4m3fnuz",
            Narrow::F8E5M2 => "f8e5m2",
            Narrow::F8E5M2FNUZ => "f8e5m2fnuz",
            Narrow::F8E8M0 => "f8e8m0",
            Narrow::F4E2M1 => "f4e2m1",
            Narrow::I4 => "i4",
            Narrow::U4 => "u4",
            Narrow::I2 => "i2",
            Narrow::U2 => "u2",
        })
    }
}

/// Unpacks ONNX's packed sub-byte data (`bits` 4 or 2, the first element in the lowest bits)
/// into one byte per element, sign-extending signed integers. `None` when `packed` does not
/// hold exactly the bytes `numel` elements need.
pub fn unpack(ty: Narrow, packed: &[u8], numel: usize) -> Option<Vec<u8>> {
    let bits = ty.bits();
    if packed.len() != (numel * bits).div_ceil(8) {
        return None;
    }
    let per = 8 / bits;
    let mask = (1u8 << bits) - 1;
    let signed = matches!(ty, Narrow::I4 | Narrow::I2);
    Some(
        (0..numel)
            .map(|i| {
                let v = (packed[i / per] >> ((i % per) * bits)) & mask;
                if signed {
                    ty.wrap(i64::from(v), true)
                } else {
                    v
                }
            })
            .collect(),
    )
}

/// The inverse of [`unpack`]: one byte per element to ONNX's packed layout.
pub fn pack(ty: Narrow, bytes: &[u8]) -> Vec<u8> {
    let bits = ty.bits();
    if bits == 8 {
        return bytes.to_vec();
    }
    let per = 8 / bits;
    let mask = (1u8 << bits) - 1;
    let mut out = vec![0u8; (bytes.len() * bits).div_ceil(8)];
    for (i, &b) in bytes.iter().enumerate() {
        out[i / per] |= (b & mask) << ((i % per) * bits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sat() -> NarrowMode {
        NarrowMode::default()
    }

    fn nosat() -> NarrowMode {
        NarrowMode {
            saturate: false,
            ..NarrowMode::default()
        }
    }

    #[test]
    fn every_code_of_a_minifloat_round_trips_through_its_value() {
        for ty in [
            Narrow::F8E4M3FN,
            Narrow::F8E4M3FNUZ,
            Narrow::F8E5M2,
            Narrow::F8E5M2FNUZ,
            Narrow::F4E2M1,
        ] {
            let codes = if ty == Narrow::F4E2M1 { 16 } else { 256 };
            for b in 0..codes {
                let b = b as u8;
                let v = ty.decode(b);
                if v.is_nan() || v.is_infinite() {
                    continue;
                }
                let back = ty.encode(f64::from(v), nosat());
                let same = back == b
                    // -0 of the FNUZ types is their NaN, so -0 never decodes; +0 is 0.
                    || (v == 0.0 && ty.decode(back) == 0.0);
                assert!(same, "{ty} code {b:#x} = {v} encodes back as {back:#x}");
            }
        }
    }

    #[test]
    fn minifloat_values_and_limits_follow_the_onnx_tables() {
        use Narrow::*;
        // Largest finite values and their codes.
        assert_eq!(F8E4M3FN.decode(0x7E), 448.0);
        assert_eq!(F8E4M3FNUZ.decode(0x7F), 240.0);
        assert_eq!(F8E5M2.decode(0x7B), 57344.0);
        assert_eq!(F8E5M2FNUZ.decode(0x7F), 57344.0);
        assert_eq!(F4E2M1.decode(0x7), 6.0);
        assert_eq!(F4E2M1.decode(0xF), -6.0);
        // Smallest subnormals.
        assert_eq!(F8E4M3FN.decode(0x01), 2f32.powi(-9));
        assert_eq!(F8E5M2.decode(0x01), 2f32.powi(-16));
        // Ties to even: 464 lies between 448 (mantissa 110) and 480: stays 448; 248 lies
        // between 240 (mantissa 111) and 256: rounds up, past E4M3FNUZ's max.
        assert_eq!(F8E4M3FN.encode(464.0, nosat()), 0x7E);
        assert_eq!(F8E4M3FN.encode(465.0, nosat()), 0x7F);
        assert_eq!(F8E4M3FNUZ.encode(248.0, nosat()), 0x80);
        assert_eq!(F8E4M3FNUZ.encode(248.0, sat()), 0x7F);
        // Infinities: saturate to the max, or inf (E5M2) / NaN without saturation.
        assert_eq!(F8E5M2.encode(f64::INFINITY, nosat()), 0x7C);
        assert_eq!(F8E5M2.encode(f64::NEG_INFINITY, nosat()), 0xFC);
        assert_eq!(F8E5M2.encode(f64::INFINITY, sat()), 0x7B);
        assert_eq!(F8E4M3FN.encode(f64::NEG_INFINITY, sat()), 0xFE);
        assert_eq!(F8E4M3FN.encode(f64::NEG_INFINITY, nosat()), 0xFF);
        assert_eq!(F8E5M2FNUZ.encode(1e9, nosat()), 0x80);
        // -0 is kept where it exists and is +0 where it does not.
        assert_eq!(F8E4M3FN.encode(-0.0, sat()), 0x80);
        assert_eq!(F8E4M3FNUZ.encode(-0.0, sat()), 0x00);
        assert_eq!(F8E5M2FNUZ.encode(-1e-12, sat()), 0x00);
        // E2M1 always saturates and ties to even (5 -> 4, 0.75 -> 1, 0.25 -> 0).
        assert_eq!(F4E2M1.decode(F4E2M1.encode(1e6, nosat())), 6.0);
        assert_eq!(F4E2M1.decode(F4E2M1.encode(5.0, sat())), 4.0);
        assert_eq!(F4E2M1.decode(F4E2M1.encode(0.75, sat())), 1.0);
        assert_eq!(F4E2M1.encode(0.25, sat()), 0);
        assert!(F8E4M3FN.decode(F8E4M3FN.encode(f64::NAN, sat())).is_nan());
    }

    #[test]
    fn integers_wrap_and_sign_extend() {
        use Narrow::*;
        assert_eq!(I4.encode(-9.0, sat()) as i8, 7);
        assert_eq!(I4.encode(8.4, sat()) as i8, -8);
        assert_eq!(I4.encode(-2.5, sat()) as i8, -2);
        assert_eq!(U4.encode(-2.5, sat()), 14);
        assert_eq!(I2.encode(2.5, sat()) as i8, -2);
        assert_eq!(U2.encode(f64::NAN, sat()), 0);
        assert_eq!(I4.encode_int(200, sat()) as i8, -8);
        assert_eq!(I4.decode(0xF8), -8.0);
        assert_eq!(U2.decode(3), 3.0);
    }

    #[test]
    fn e8m0_rounds_as_the_mode_says() {
        let up = NarrowMode::default();
        let down = NarrowMode {
            round: E8M0Round::Down,
            ..up
        };
        let nearest = NarrowMode {
            saturate: false,
            round: E8M0Round::Nearest,
        };
        let e = Narrow::F8E8M0;
        assert_eq!(e.decode(127), 1.0);
        assert!(e.decode(0xFF).is_nan());
        assert_eq!(e.encode(1.1, up), 128);
        assert_eq!(e.encode(1.1, down), 127);
        assert_eq!(e.encode(1.4, nearest), 127);
        assert_eq!(e.encode(1.6, nearest), 128);
        assert_eq!(e.encode(0.0, up), 0);
        assert_eq!(e.encode(f64::INFINITY, up), 0xFF);
        // Saturation keeps the largest exponent instead of rounding into NaN.
        assert_eq!(e.encode(f64::from(f32::MAX), up), 0xFE);
        assert_eq!(
            e.encode(
                f64::from(f32::MAX),
                NarrowMode {
                    saturate: false,
                    ..up
                }
            ),
            0xFF
        );
    }

    #[test]
    fn packing_round_trips_and_checks_lengths() {
        let v: Vec<u8> = [-8i8, 7, -1, 0, 3].iter().map(|&x| x as u8).collect();
        let p = pack(Narrow::I4, &v);
        assert_eq!(p, vec![0x78, 0x0F, 0x03]);
        assert_eq!(unpack(Narrow::I4, &p, 5).as_deref(), Some(&v[..]));
        assert_eq!(unpack(Narrow::I4, &p, 7), None);
        let u = vec![1u8, 2, 3, 0, 1];
        let p2 = pack(Narrow::U2, &u);
        assert_eq!(p2, vec![0b0011_1001, 0b01]);
        assert_eq!(unpack(Narrow::U2, &p2, 5).as_deref(), Some(&u[..]));
    }
}
