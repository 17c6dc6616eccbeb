//! Element-wise non-linear functions proven by table lookup (Sigmoid, Tanh, Exp, Log, Sqrt,
//! Softplus, Softsign, Erf, Gelu, Elu, Selu, Pow by a constant, the hard and smooth activations,
//! trigonometric and hyperbolic functions, rounding, Sign): their float definition, their
//! quantized form, and the range of inputs a table must cover. The math is libm's, in Rust: a
//! table is the same on every platform.

use serde::{Deserialize, Serialize};

/// A function of one value, looked up in a table over the quantized domain.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Function {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `e^x`.
    Exp,
    /// `ln x` (x > 0).
    Log,
    /// `√x` (x ≥ 0).
    Sqrt,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// The error function.
    Erf,
    /// `x · Φ(x)`; with `tanh`, the tanh approximation ONNX's `approximate = "tanh"` names.
    Gelu {
        /// Use the tanh approximation.
        tanh: bool,
    },
    /// `x` for `x ≥ 0`, `alpha · (e^x - 1)` below.
    Elu {
        /// The negative side's factor.
        alpha: f64,
    },
    /// `gamma · x` for `x > 0`, `gamma · alpha · (e^x - 1)` otherwise.
    Selu {
        /// The negative side's factor.
        alpha: f64,
        /// The overall factor.
        gamma: f64,
    },
    /// `x^exponent` for a constant exponent.
    Pow {
        /// The exponent.
        exponent: f64,
    },
    /// `max(0, min(1, alpha · x + beta))`.
    HardSigmoid {
        /// The slope.
        alpha: f64,
        /// The offset.
        beta: f64,
    },
    /// `x · max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    /// `max(0, x) + min(0, alpha · (e^(x/alpha) - 1))`.
    Celu {
        /// The negative side's scale.
        alpha: f64,
    },
    /// `x · tanh(ln(1 + e^x))`.
    Mish,
    /// `x` for `x > alpha`, else 0.
    ThresholdedRelu {
        /// The threshold.
        alpha: f64,
    },
    /// A trigonometric or hyperbolic function, or its inverse.
    Trig(Trig),
    /// Rounding to an integer: ONNX's Round (halves to even), Floor, Ceil.
    Round(Rounding),
    /// -1, 0 or 1 as `x` is negative, zero or positive.
    Sign,
}

/// The trigonometric and hyperbolic functions ONNX names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Trig {
    Sin,
    Cos,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
}

/// How ONNX's rounding ops round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rounding {
    /// To the nearest integer, halves to even (Round).
    HalfEven,
    /// Down (Floor).
    Floor,
    /// Up (Ceil).
    Ceil,
}

impl Function {
    /// The float function; NaN or infinite where it is undefined.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Function::Sigmoid => 1.0 / (1.0 + libm::exp(-x)),
            Function::Tanh => libm::tanh(x),
            Function::Exp => libm::exp(x),
            Function::Log => libm::log(x),
            Function::Sqrt => libm::sqrt(x),
            Function::Softplus => {
                // ln(1 + e^x) without overflow for large x.
                x.max(0.0) + libm::log1p(libm::exp(-x.abs()))
            }
            Function::Softsign => x / (1.0 + x.abs()),
            Function::Erf => libm::erf(x),
            Function::Gelu { tanh: false } => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Function::Gelu { tanh: true } => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + libm::tanh(c * (x + 0.044715 * x * x * x)))
            }
            Function::Elu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * libm::expm1(x)
                }
            }
            Function::Selu { alpha, gamma } => {
                if x > 0.0 {
                    gamma * x
                } else {
                    gamma * alpha * libm::expm1(x)
                }
            }
            Function::Pow { exponent } => libm::pow(x, exponent),
            Function::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Function::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Function::Celu { alpha } => x.max(0.0) + (alpha * libm::expm1(x / alpha)).min(0.0),
            Function::Mish => x * libm::tanh(Function::Softplus.eval(x)),
            Function::ThresholdedRelu { alpha } => {
                if x > alpha {
                    x
                } else {
                    0.0
                }
            }
            Function::Trig(t) => match t {
                Trig::Sin => libm::sin(x),
                Trig::Cos => libm::cos(x),
                Trig::Asin => libm::asin(x),
                Trig::Acos => libm::acos(x),
                Trig::Atan => libm::atan(x),
                Trig::Sinh => libm::sinh(x),
                Trig::Cosh => libm::cosh(x),
                Trig::Asinh => libm::asinh(x),
                // libm's acosh reads |x| only: below 1 it is undefined.
                Trig::Acosh if x < 1.0 => f64::NAN,
                Trig::Acosh => libm::acosh(x),
                Trig::Atanh => libm::atanh(x),
            },
            Function::Round(Rounding::HalfEven) => libm::rint(x),
            Function::Round(Rounding::Floor) => libm::floor(x),
            Function::Round(Rounding::Ceil) => libm::ceil(x),
            Function::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// `round(f(x / 2^scale) · 2^scale)`: the table's output for the quantized input `x`;
    /// `None` where `f` is undefined or the result does not fit 127 bits.
    pub fn quantized(self, x: i128, scale: u32) -> Option<i128> {
        let one = (1u128 << scale) as f64;
        let y = (self.eval(x as f64 / one) * one).round();
        (y.is_finite() && y.abs() < 1e37).then_some(y as i128)
    }

    /// The function is monotone below this input (GELU dips to its minimum near -0.75, Mish near
    /// -1.19, HardSwish at -1.5, ThresholdedRelu jumps at its threshold; every other function
    /// here but the periodic ones is monotone on its whole domain or, as `x^2`, never constant).
    fn monotone_below(self) -> f64 {
        match self {
            Function::Gelu { .. } => -0.75,
            Function::Mish => -1.2,
            Function::HardSwish => -1.5,
            Function::ThresholdedRelu { alpha } => alpha,
            _ => f64::INFINITY,
        }
    }

    /// Sine and cosine come back to every value: no tail of theirs is constant, and the search
    /// for one (which assumes a monotone tail) must not run.
    fn periodic(self) -> bool {
        matches!(self, Function::Trig(Trig::Sin | Trig::Cos))
    }

    /// The ONNX operator name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Function::Sigmoid => "Sigmoid",
            Function::Tanh => "Tanh",
            Function::Exp => "Exp",
            Function::Log => "Log",
            Function::Sqrt => "Sqrt",
            Function::Softplus => "Softplus",
            Function::Softsign => "Softsign",
            Function::Erf => "Erf",
            Function::Gelu { .. } => "Gelu",
            Function::Elu { .. } => "Elu",
            Function::Selu { .. } => "Selu",
            Function::Pow { .. } => "Pow",
            Function::HardSigmoid { .. } => "HardSigmoid",
            Function::HardSwish => "HardSwish",
            Function::Celu { .. } => "Celu",
            Function::Mish => "Mish",
            Function::ThresholdedRelu { .. } => "ThresholdedRelu",
            Function::Trig(t) => match t {
                Trig::Sin => "Sin",
                Trig::Cos => "Cos",
                Trig::Asin => "Asin",
                Trig::Acos => "Acos",
                Trig::Atan => "Atan",
                Trig::Sinh => "Sinh",
                Trig::Cosh => "Cosh",
                Trig::Asinh => "Asinh",
                Trig::Acosh => "Acosh",
                Trig::Atanh => "Atanh",
            },
            Function::Round(Rounding::HalfEven) => "Round",
            Function::Round(Rounding::Floor) => "Floor",
            Function::Round(Rounding::Ceil) => "Ceil",
            Function::Sign => "Sign",
        }
    }
}

/// The inputs a table covers: `[lo, hi]`. Below `lo` (above `hi`) the function is constant over
/// the whole activation range when `clamp_low` (`clamp_high`) is set, so the circuit clamps the
/// input to the table; otherwise such an input has no row, and proving refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Smallest input in the table.
    pub lo: i64,
    /// Largest input in the table.
    pub hi: i64,
    /// Inputs below `lo` give `f(lo)`.
    pub clamp_low: bool,
    /// Inputs above `hi` give `f(hi)`.
    pub clamp_high: bool,
}

impl Domain {
    /// Rows of the table.
    pub fn rows(&self) -> usize {
        usize::try_from(i128::from(self.hi) - i128::from(self.lo) + 1).unwrap_or(usize::MAX)
    }

    /// The table row an input reads: the input itself, or the edge it clamps to. `None` when the
    /// input lies outside the table on a side that does not clamp.
    pub fn row_input(&self, x: i128) -> Option<i128> {
        let (lo, hi) = (i128::from(self.lo), i128::from(self.hi));
        match x {
            _ if x < lo => self.clamp_low.then_some(lo),
            _ if x > hi => self.clamp_high.then_some(hi),
            _ => Some(x),
        }
    }
}

/// Largest `t` in `[a, b]` with `pred` true on all of `[a, t]`, given that `pred` holds on a
/// prefix of `[a, b]` and holds at `a`.
fn last_of_prefix(a: i128, b: i128, pred: impl Fn(i128) -> bool) -> i128 {
    let (mut lo, mut hi) = (a, b);
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        if pred(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Smallest `t` in `[a, b]` with `pred` true on all of `[t, b]`, given that `pred` holds on a
/// suffix of `[a, b]` and holds at `b`.
fn first_of_suffix(a: i128, b: i128, pred: impl Fn(i128) -> bool) -> i128 {
    -last_of_prefix(-b, -a, |x| pred(-x))
}

/// The table domain of `f` at `scale` for activations of `bits` signed bits, restricted to
/// `range` (float inputs) when given: the function's defined, in-range inputs, with each side
/// where it is constant up to the activation bound folded into one clamped row. The functions
/// here are defined and in range on an interval and constant, if at all, on its tails.
pub fn domain(f: Function, scale: u32, bits: u32, range: Option<(f64, f64)>) -> Result<Domain, String> {
    let bound = 1i128 << (bits - 1);
    let (min, max) = (-bound, bound - 1);
    let valid = |x: i128| f.quantized(x, scale).is_some_and(|y| -bound <= y && y < bound);
    let one = (1u128 << scale) as f64;
    let (a, b) = match range {
        Some((lo, hi)) => (((lo * one).floor() as i128).max(min), ((hi * one).ceil() as i128).min(max)),
        None => (min, max),
    };
    if a > b {
        return Err(format!("the lookup range {range:?} is empty"));
    }
    // The defined, in-range inputs: one interval [first, last].
    // (Asin, Acos and Atanh live on [-1, 1] only, narrower than the steps at wide widths: 0 and
    // ±1 are probed too.)
    let unit = 1i128 << scale;
    let probe = (a..=b)
        .step_by(((b - a) / 64).max(1) as usize)
        .chain([b, 0, unit, -unit, unit / 2])
        .find(|&x| a <= x && x <= b && valid(x));
    let Some(inside) = probe else {
        return Err(format!("{} has no input in {range:?} whose output fits {bits}-bit activations", f.name()));
    };
    let first = first_of_suffix(min, inside, valid);
    let last = last_of_prefix(inside, max, valid);
    let (mut lo, mut hi) = (first.max(a), last.min(b));
    let (mut clamp_low, mut clamp_high) = (false, false);
    if first == min && !f.periodic() {
        let edge = f.quantized(min, scale);
        let monotone = ((f.monotone_below() * one).floor() as i128).clamp(min, last);
        let saturated = last_of_prefix(min, monotone, |x| f.quantized(x, scale) == edge);
        if saturated > min && saturated >= a {
            (lo, clamp_low) = (saturated, true);
        }
    }
    if last == max && !f.periodic() {
        let edge = f.quantized(max, scale);
        let saturated = first_of_suffix(first, max, |x| f.quantized(x, scale) == edge);
        if saturated < max && saturated <= b {
            (hi, clamp_high) = (saturated, true);
        }
    }
    hi = hi.max(lo);
    let fits = |v: i128| i64::try_from(v).map_err(|_| format!("{} needs a table beyond 64-bit inputs", f.name()));
    Ok(Domain { lo: fits(lo)?, hi: fits(hi)?, clamp_low, clamp_high })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table and clamping agree with the function at every input of a small range.
    fn check_everywhere(f: Function, scale: u32, bits: u32) {
        let d = domain(f, scale, bits, None).unwrap();
        let bound = 1i128 << (bits - 1);
        for x in -bound..bound {
            let direct = f.quantized(x, scale).filter(|y| -bound <= *y && *y < bound);
            let via_table = d.row_input(x).and_then(|r| f.quantized(r, scale));
            match direct {
                Some(y) => assert_eq!(via_table, Some(y), "{f:?} at {x} ({d:?})"),
                None => assert!(via_table.is_none(), "{f:?} at {x} has no valid output but the table gives one"),
            }
        }
    }

    #[test]
    fn tables_with_clamping_equal_the_function_on_the_whole_range() {
        for f in [
            Function::Sigmoid,
            Function::Tanh,
            Function::Exp,
            Function::Log,
            Function::Sqrt,
            Function::Softplus,
            Function::Softsign,
            Function::Erf,
            Function::Gelu { tanh: false },
            Function::Gelu { tanh: true },
            Function::Elu { alpha: 1.0 },
            Function::Selu { alpha: 1.673_263_2, gamma: 1.050_701 },
            Function::Pow { exponent: 3.0 },
            Function::Pow { exponent: 0.5 },
            Function::HardSigmoid { alpha: 0.2, beta: 0.5 },
            Function::HardSwish,
            Function::Celu { alpha: 1.0 },
            Function::Celu { alpha: 0.5 },
            Function::Mish,
            Function::ThresholdedRelu { alpha: 1.0 },
            Function::ThresholdedRelu { alpha: -1.0 },
            Function::Round(Rounding::HalfEven),
            Function::Round(Rounding::Floor),
            Function::Round(Rounding::Ceil),
            Function::Sign,
        ]
        .into_iter()
        .chain(
            [
                Trig::Sin,
                Trig::Cos,
                Trig::Asin,
                Trig::Acos,
                Trig::Atan,
                Trig::Sinh,
                Trig::Cosh,
                Trig::Asinh,
                Trig::Acosh,
                Trig::Atanh,
            ]
            .map(Function::Trig),
        ) {
            check_everywhere(f, 5, 12);
        }
    }

    #[test]
    fn a_restricted_table_holds_defined_inputs_only() {
        // Acosh is undefined below 1 (libm's would answer for -x): its table starts at 1.
        let acosh = Function::Trig(Trig::Acosh);
        let d = domain(acosh, 7, 24, Some((-4.0, 4.0))).unwrap();
        assert_eq!((d.lo, d.hi), (128, 512), "{d:?}");
        for f in [Function::Trig(Trig::Asin), Function::Trig(Trig::Atanh), acosh, Function::Log, Function::Sqrt] {
            let d = domain(f, 7, 24, Some((-4.0, 4.0))).unwrap();
            assert!((d.lo..=d.hi).all(|x| f.quantized(i128::from(x), 7).is_some()), "{f:?} {d:?}");
        }
    }

    #[test]
    fn saturated_tails_fold_into_one_row() {
        // e^x at scale 7 rounds to 0 below x ≈ -5.5 and overflows 16 bits above x ≈ 5.5.
        let d = domain(Function::Exp, 7, 16, None).unwrap();
        assert!(d.clamp_low && !d.clamp_high, "{d:?}");
        assert!(d.rows() < 1500, "{d:?}");
        assert_eq!(Function::Exp.quantized(i128::from(d.lo) - 1, 7), Some(0));
        // A narrower range keeps its clamped side when the function is constant beyond it.
        let erf = domain(Function::Erf, 7, 16, Some((-1.0, 1.0))).unwrap();
        assert!(!erf.clamp_low && !erf.clamp_high && erf.lo == -128 && erf.hi == 128, "{erf:?}");
        let sqrt = domain(Function::Sqrt, 7, 16, Some((-1.0, 4.0))).unwrap();
        assert_eq!((sqrt.lo, sqrt.hi, sqrt.clamp_low), (0, 512, false));
        assert!(domain(Function::Log, 7, 16, Some((-2.0, -1.0))).is_err());
    }
}
