//! Unique witnesses, exhaustively: for every gadget that takes a hint, at a small width, every
//! input in range is laid out with every alternative hint (every value of the hint's range, the
//! values just beyond it, and their field negatives `p - v`), and exactly the honest hint
//! satisfies the MockProver. Single tampering finds a missing constraint only where a test
//! happens to look; this finds an under-constrained hint wherever one exists at these widths.
//!
//! A hint of two values (quotient and remainder) is tried with every alternative quotient and
//! the one remainder that keeps the recomposition equality true (any other remainder breaks
//! that equality, which a sample of cases checks too): those are the only alternatives that the
//! range checks alone must exclude. Inputs just outside the range are tried too: no hint, the
//! honest one included, may pass them.
//!
//! The same checks score the gadgets' constraints (see [`super::mutation`]): each named check
//! is dropped in turn, and some check here must then fail.

use halo2_base::gates::RangeChip;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context};

use super::field::{fe, to_i128};
use super::instances::{layout_offset, layout_pack, pack_lookup_hinted};
use super::linear::{layout_rescale, layout_rescale_split, rescale_hint, RescaleHint, SplitHint};
use super::mutation::{without, CHECKS};
use super::nonlinear::{layout_less, layout_relu, layout_relu_of_split};
use super::pool::{layout_div, layout_max, layout_mean, DivisionHint};
use super::soundness::{mock_run_at, mock_run_with_lookups};

/// Rows of the small circuits: range checks of up to `K - 1` bits are one lookup.
const K: usize = 9;

/// Whether the gadget, with its own outputs public, satisfies the MockProver.
fn satisfied(gadget: impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>>) -> bool {
    mock_run_at(K, &gadget, None).0
}

/// The alternatives of a hint whose honest values lie in `lo..hi`: that range, one step beyond
/// each end, and the field negatives of all of them (`fe(-v)` is `p - v`).
fn alternatives(lo: i128, hi: i128) -> Vec<i128> {
    let mut all: Vec<i128> = (lo - 1..=hi).collect();
    all.extend((lo - 1..=hi).map(|v| -v));
    all.sort_unstable();
    all.dedup();
    all
}

/// A check's outcome: the first wrong acceptance or rejection, in words.
type Checked = Result<(), String>;

/// Exactly `honest` among `others` (and itself) is accepted.
fn only_honest<H: Copy + PartialEq + std::fmt::Debug>(
    what: &str,
    honest: H,
    others: &[H],
    accepts: impl Fn(H) -> bool,
) -> Checked {
    if !accepts(honest) {
        return Err(format!("{what}: the honest hint {honest:?} fails"));
    }
    match others.iter().find(|&&h| h != honest && accepts(h)) {
        Some(h) => Err(format!("{what}: the hint {h:?} passes (honest {honest:?})")),
        None => Ok(()),
    }
}

/// None of `hints` is accepted (an input outside the gadget's range).
fn none_passes<H: Copy + std::fmt::Debug>(what: &str, hints: &[H], accepts: impl Fn(H) -> bool) -> Checked {
    match hints.iter().find(|&&h| accepts(h)) {
        Some(h) => Err(format!("{what}: the hint {h:?} passes an input outside the range")),
        None => Ok(()),
    }
}

const BITS: u32 = 5;
const SHIFT: u32 = 3;

fn rescale_accepts(shifted: i128, hint: RescaleHint) -> bool {
    satisfied(|ctx, range| {
        let cell = ctx.load_witness(fe(shifted));
        vec![layout_rescale(ctx, range, cell, SHIFT, BITS, hint)]
    })
}

/// Every shifted accumulator (and a few beyond both ends): one hint, or none out of range.
fn check_rescale() -> Checked {
    let top = 1i128 << (BITS + SHIFT);
    for shifted in -3..top + 3 {
        let honest = rescale_hint(shifted, SHIFT);
        let others: Vec<RescaleHint> = alternatives(0, 1 << BITS)
            .into_iter()
            .map(|q| RescaleHint { quotient: q, remainder: shifted - (q << SHIFT) })
            .collect();
        let what = format!("rescale of {shifted}");
        if (0..top).contains(&shifted) {
            only_honest(&what, honest, &others, |h| rescale_accepts(shifted, h))?;
        } else {
            none_passes(&what, &others, |h| rescale_accepts(shifted, h))?;
        }
    }
    // A remainder that breaks the recomposition fails on the equality itself.
    let shifted = 77;
    let honest = rescale_hint(shifted, SHIFT);
    let others: Vec<RescaleHint> =
        alternatives(0, 1 << SHIFT).into_iter().map(|r| RescaleHint { remainder: r, ..honest }).collect();
    only_honest("rescale remainders", honest, &others, |h| rescale_accepts(shifted, h))
}

fn rescale_split_accepts(shifted: i128, hint: SplitHint) -> bool {
    satisfied(|ctx, range| {
        let cell = ctx.load_witness(fe(shifted));
        let (value, split) = layout_rescale_split(ctx, range, cell, SHIFT, BITS, hint);
        vec![value, layout_relu_of_split(ctx, range, &split)]
    })
}

/// The rescale with its quotient split by sign, and the Relu of the split: for a spread of
/// shifted accumulators (each quotient's first and last, and a few beyond both ends), every sign
/// and low part with the remainder that keeps the recomposition true: one hint, or none out of
/// range.
fn check_rescale_split() -> Checked {
    let top = 1i128 << (BITS + SHIFT);
    let step = 1i128 << SHIFT;
    let spread = (0..1 << BITS).flat_map(|q| [q * step, q * step + step - 1]);
    let half = 1i128 << (BITS - 1);
    let parts: Vec<(i128, i128)> = alternatives(0, 2)
        .into_iter()
        .flat_map(|sign| alternatives(0, half).into_iter().map(move |low| (sign, low)))
        .collect();
    for shifted in (-2..0).chain(spread).chain(top..top + 2) {
        let honest = SplitHint::honest(shifted, SHIFT, BITS);
        let others: Vec<SplitHint> = parts
            .iter()
            .map(|&(sign, low)| SplitHint { sign, low, remainder: shifted - ((sign * half + low) << SHIFT) })
            .collect();
        let what = format!("split rescale of {shifted}");
        if (0..top).contains(&shifted) {
            only_honest(&what, honest, &others, |h| rescale_split_accepts(shifted, h))?;
            // The value is the plain rescale's, and the Relu of the split is its Relu.
            let plain = rescale_hint(shifted, SHIFT).quotient - half;
            let gadget = |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
                let cell = ctx.load_witness(fe(shifted));
                let (value, split) = layout_rescale_split(ctx, range, cell, SHIFT, BITS, honest);
                vec![value, layout_relu_of_split(ctx, range, &split)]
            };
            let (_, values) = mock_run_at(K, &gadget, None);
            let values: Vec<_> = values.iter().map(to_i128).collect();
            if values != [Some(plain), Some(plain.max(0))] {
                return Err(format!("{what}: value and Relu {values:?}, expected {plain} and its Relu"));
            }
        } else {
            none_passes(&what, &others, |h| rescale_split_accepts(shifted, h))?;
        }
    }
    Ok(())
}

fn relu_accepts(v: i128, sign: i128) -> bool {
    satisfied(|ctx, range| {
        let cell = ctx.load_witness(fe(v));
        vec![layout_relu(ctx, range, cell, BITS, sign)]
    })
}

/// Every value of `BITS` signed bits (and a few beyond): one sign, or none out of range.
fn check_relu() -> Checked {
    let half = 1i128 << (BITS - 1);
    for v in -half - 2..half + 2 {
        let what = format!("relu of {v}");
        if (-half..half).contains(&v) {
            only_honest(&what, (v >= 0) as i128, &alternatives(0, 2), |s| relu_accepts(v, s))?;
        } else {
            none_passes(&what, &alternatives(0, 2), |s| relu_accepts(v, s))?;
        }
    }
    Ok(())
}

fn less_accepts(a: i128, b: i128, strict: bool, bit: i128) -> bool {
    satisfied(|ctx, range| {
        let (a, b) = (ctx.load_witness(fe(a)), ctx.load_witness(fe(b)));
        vec![layout_less(ctx, range, (a.into(), b.into()), strict, BITS, Some(bit))]
    })
}

/// Comparisons of values of `BITS` signed bits (a spread of left operands against every right
/// one, strict and not): one bit each, whatever the difference.
fn check_less() -> Checked {
    let half = 1i128 << (BITS - 1);
    for a in [-half, -half + 1, -5, -1, 0, 1, 6, half - 1] {
        for b in -half..half {
            for strict in [true, false] {
                let honest = if strict { a < b } else { a <= b } as i128;
                let what = format!("{a} {} {b}", if strict { "<" } else { "<=" });
                only_honest(&what, honest, &alternatives(0, 2), |bit| less_accepts(a, b, strict, bit))?;
            }
        }
    }
    Ok(())
}

fn extremum_accepts(x: i128, y: i128, bits: u32, min: bool, h: i128) -> bool {
    satisfied(|ctx, range| {
        let cells = [ctx.load_witness(fe(x)), ctx.load_witness(fe(y))];
        vec![layout_max(ctx, range, &cells, bits, min, Some(h))]
    })
}

/// Every pair of 3-bit values, maximum and minimum: one extremum; and operands too far apart for
/// the width: none.
fn check_extremum() -> Checked {
    let bits = 3;
    let half = 1i128 << (bits - 1);
    let hints = alternatives(-half, half);
    for x in -half..half {
        for y in -half..half {
            for min in [false, true] {
                let honest = if min { x.min(y) } else { x.max(y) };
                let what = format!("extremum of {x}, {y} (min {min})");
                only_honest(&what, honest, &hints, |h| extremum_accepts(x, y, bits, min, h))?;
            }
        }
    }
    for (x, y) in [(5, -4), (-5, 4)] {
        let wide: Vec<i128> = (-12..=12).collect();
        none_passes(&format!("extremum of {x}, {y}"), &wide, |h| extremum_accepts(x, y, bits, false, h))?;
    }
    Ok(())
}

fn division_accepts(a: i128, b: i128, shift: u32, bits: u32, hint: DivisionHint) -> bool {
    satisfied(|ctx, range| {
        let (x, y) = (ctx.load_witness(fe(a)), ctx.load_witness(fe(b)));
        vec![layout_div(ctx, range, x, y, shift, bits, Some(hint))]
    })
}

/// Every 4-bit dividend by every divisor from 1 up (shift 1): one quotient when it is in range,
/// none when it is not; no divisor below 1 passes.
fn check_division() -> Checked {
    let (bits, shift) = (4u32, 1u32);
    let half = 1i128 << (bits - 1);
    for a in -half..half {
        for b in -2..=half {
            // The gadget's left-hand side: 2·a·2^shift + b + 2·b·offset = 2b·q + r.
            let lhs = 2 * a * (1 << shift) + b + 2 * b * half;
            let others: Vec<DivisionHint> = alternatives(0, 1 << bits)
                .into_iter()
                .map(|q| DivisionHint { quotient: q, remainder: lhs - 2 * b * q })
                .collect();
            let what = format!("{a} / {b}");
            let accepts = |h| division_accepts(a, b, shift, bits, h);
            if b < 1 {
                none_passes(&what, &others, accepts)?;
                continue;
            }
            let honest = DivisionHint { quotient: lhs.div_euclid(2 * b), remainder: lhs.rem_euclid(2 * b) };
            if (0..1 << bits).contains(&honest.quotient) {
                only_honest(&what, honest, &others, accepts)?;
                // Remainders that break the recomposition.
                let broken: Vec<DivisionHint> =
                    alternatives(0, 2 * b).into_iter().map(|r| DivisionHint { remainder: r, ..honest }).collect();
                only_honest(&what, honest, &broken, accepts)?;
            } else {
                none_passes(&what, &others, accepts)?;
            }
        }
    }
    // A divisor that is half an odd number in the field (2b small, b itself huge) has no
    // quotient either: the remainder checks leave only positive integer divisors.
    let half_field = Fr::from(2).invert().unwrap();
    for m in [1u64, 3, 5, 15] {
        let b = half_field * Fr::from(m);
        let hints: Vec<DivisionHint> = alternatives(0, 1 << bits)
            .into_iter()
            .flat_map(|q| (0..=2 * m as i128).map(move |r| DivisionHint { quotient: q, remainder: r }))
            .collect();
        none_passes(&format!("3 / ({m}/2 in the field)"), &hints, |hint| {
            satisfied(|ctx, range| {
                let (x, y) = (ctx.load_witness(fe(3)), ctx.load_witness(b));
                vec![layout_div(ctx, range, x, y, shift, bits, Some(hint))]
            })
        })?;
    }
    Ok(())
}

fn mean_accepts(cells: &[i128], count: u64, bits: u32, hint: DivisionHint) -> bool {
    satisfied(|ctx, range| {
        let assigned: Vec<_> = cells.iter().map(|&v| ctx.load_witness(fe(v))).collect();
        vec![layout_mean(ctx, range, &assigned, count, bits, Some(hint))]
    })
}

/// Means of one or two 4-bit values over counts 1 to 3 (a window's count may include padding):
/// one quotient; and of values too large for the width: none.
fn check_mean() -> Checked {
    let bits = 4u32;
    let half = 1i128 << (bits - 1);
    for count in 1..=3u64 {
        for x in -half - 2..half + 2 {
            for cells in [vec![x], vec![x, -3], vec![x, x]] {
                if cells.len() as u64 > count {
                    continue;
                }
                let d = 2 * count as i128;
                let shifted = 2 * cells.iter().sum::<i128>() + count as i128 + d * half;
                let honest = DivisionHint { quotient: shifted.div_euclid(d), remainder: shifted.rem_euclid(d) };
                let others: Vec<DivisionHint> = alternatives(0, 1 << bits)
                    .into_iter()
                    .map(|q| DivisionHint { quotient: q, remainder: shifted - d * q })
                    .collect();
                let what = format!("mean of {cells:?} over {count}");
                let accepts = |h| mean_accepts(&cells, count, bits, h);
                if (0..1 << bits).contains(&honest.quotient) {
                    only_honest(&what, honest, &others, accepts)?;
                    let broken: Vec<DivisionHint> =
                        alternatives(0, d).into_iter().map(|r| DivisionHint { remainder: r, ..honest }).collect();
                    only_honest(&what, honest, &broken, accepts)?;
                } else {
                    none_passes(&what, &others, accepts)?;
                }
            }
        }
    }
    Ok(())
}

/// Packing public instances has no hint: every value in range packs, and none outside it.
fn check_packing() -> Checked {
    let half = 1i128 << (BITS - 1);
    for v in -half - 3..half + 3 {
        let packs = satisfied(|ctx, range| {
            let cell = ctx.load_witness(fe(v));
            let shifted = layout_offset(ctx, range, &[cell], BITS);
            layout_pack(ctx, range, &shifted, BITS)
        });
        if packs != (-half..half).contains(&v) {
            return Err(format!("packing {v} at {BITS} bits: {}", if packs { "accepted" } else { "refused" }));
        }
    }
    Ok(())
}

/// Values packed by table: for every value in range exactly the honest offset form passes, for
/// a value outside it none (with the word public, as a public param's).
fn check_range_lookup() -> Checked {
    let half = 1i128 << (BITS - 1);
    let accepts = |v: i128, shifted: i128| {
        mock_run_with_lookups(K, |ctx, range, lookups| {
            let cell = ctx.load_witness(fe(v));
            pack_lookup_hinted(ctx, range, lookups, &[cell], BITS, &|_| fe(shifted)).1
        })
    };
    let hints = alternatives(0, 2 * half);
    for v in -half - 3..half + 3 {
        if (-half..half).contains(&v) {
            only_honest(&format!("the offset form of {v}"), v + half, &hints, |h| accepts(v, h))?;
        } else if let Some(h) = hints.iter().find(|&&h| accepts(v, h)) {
            return Err(format!("{v} is outside {BITS} bits, yet the offset form {h} passes"));
        }
    }
    Ok(())
}

/// A gadget's name (as its constraints' names start) and its check.
type NamedCheck = (&'static str, fn() -> Checked);

/// Every check of this file, by name.
fn all_checks() -> [NamedCheck; 9] {
    [
        ("rescale split", check_rescale_split),
        ("rescale", check_rescale),
        ("relu", check_relu),
        ("less", check_less),
        ("extremum", check_extremum),
        ("division", check_division),
        ("mean", check_mean),
        ("instances", check_packing),
        ("instances", check_range_lookup),
    ]
}

#[test]
fn a_rescale_accepts_one_quotient_for_every_accumulator() {
    check_rescale().unwrap();
}

#[test]
fn a_rescale_split_by_sign_accepts_one_split_for_every_accumulator() {
    check_rescale_split().unwrap();
}

#[test]
fn a_relu_accepts_one_sign_for_every_value() {
    check_relu().unwrap();
}

#[test]
fn a_comparison_accepts_one_bit_for_every_pair() {
    check_less().unwrap();
}

#[test]
fn a_maximum_and_a_minimum_accept_one_extremum_for_every_pair() {
    check_extremum().unwrap();
}

#[test]
fn a_division_accepts_one_quotient_for_every_dividend_and_divisor() {
    check_division().unwrap();
}

#[test]
fn a_mean_accepts_one_quotient_for_every_sum_and_count() {
    check_mean().unwrap();
}

#[test]
fn public_instances_pack_every_value_in_range_and_none_outside() {
    check_packing().unwrap();
}

#[test]
fn a_range_lookup_accepts_one_offset_form_for_every_value_and_none_outside() {
    check_range_lookup().unwrap();
}

#[test]
fn every_check_of_the_hinted_gadgets_is_needed() {
    // Mutation score: each named check dropped in turn must make some check above fail.
    let mut undetected = Vec::new();
    for &name in CHECKS {
        // The check of the gadget the name belongs to first: it is the one expected to fail.
        let mut checks = all_checks();
        checks.sort_by_key(|(gadget, _)| !name.starts_with(gadget));
        let caught = without(name, || checks.iter().find_map(|(gadget, check)| check().err().map(|e| (*gadget, e))));
        match caught {
            Some((gadget, e)) => println!("dropped {name:45} -> caught by the {gadget} check: {e}"),
            None => undetected.push(name),
        }
    }
    let score = CHECKS.len() - undetected.len();
    println!("mutation score: {score} / {} checks", CHECKS.len());
    assert!(undetected.is_empty(), "no check fails without: {undetected:?}");
}

#[test]
fn the_alternatives_cover_the_range_its_edges_and_the_field_negatives() {
    let all = alternatives(0, 4);
    assert_eq!(all, vec![-4, -3, -2, -1, 0, 1, 2, 3, 4]);
    // `fe(-3)` is p - 3: a field negative, not a small number.
    assert_eq!(to_i128(&fe(-3)), Some(-3));
    assert_ne!(fe(-3), fe(3));
}
