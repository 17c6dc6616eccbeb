//! Solidity from a traced verifier ([`Program`]): the direct verifier, one contract whose inline
//! assembly runs the program's steps in order, each commented with what it does.
//!
//! Calling convention (the same as snark-verifier's contracts, so that every caller keeps
//! working): no selector; the calldata is the public instances as 32-byte big-endian words, then
//! the proof, and exactly that many bytes. The contract returns nothing when the proof is valid
//! and reverts otherwise.

use std::fmt::Write;

use alloy::primitives::U256;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::halo2curves::ff::PrimeField;

use super::program::{base_modulus, scalar_modulus, Layout, Op, Program, Word};

/// Where the program's variables start in memory. Below them, the running sum of a
/// multi-scalar multiplication (0x00, two words) and its next term's point and scalar (0x40,
/// three words): Solidity's scratch space, free memory pointer and zero word, which no Solidity
/// code reads after the assembly (it returns or reverts itself).
const VARS: u64 = 0xa0;
/// Where a multi-scalar multiplication keeps its running sum.
const SUM: u64 = 0x00;
/// Where the term added to it is staged (point, then scalar) and multiplied.
const TERM: u64 = 0x40;
/// The fewest consecutive calldata scalars read with one copy and a loop (a quarter as many
/// points): fewer are read one by one.
const MIN_RUN: usize = 8;
/// The fewest rows of a run of Lagrange denominators rendered as a loop (see
/// [`Renderer::lagrange_rows`]).
const MIN_LAGRANGE_ROWS: usize = 4;
/// What the comment above each loop of Lagrange rows says (the size estimate counts them).
pub const LAGRANGE_LOOP: &str = "rows of Lagrange denominators in a loop";
/// The share of EIP-170's limit above which a direct verifier's estimated size has its Lagrange
/// rows rendered as loops.
const ROLL_ABOVE: f64 = 0.98;
/// Gas a looped Lagrange row costs beyond its two straight-line operations (the next power, the
/// pointer, the loop's test and jump), for the estimate.
pub const LOOPED_ROW_GAS: u64 = 96;

/// What a rendered verifier says about itself in its header.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// What the key verifies (a model, an aggregation), one line.
    pub title: String,
    /// The digest of the circuit the key was made for.
    pub circuit_digest: String,
}

fn hex(value: U256) -> String {
    format!("{value:#x}")
}

struct Renderer<'a> {
    program: &'a Program,
    layout: Layout,
    scratch: u64,
    /// The last operation that reads each variable.
    last_read: Vec<Option<usize>>,
    /// The point variable whose value is at [`SUM`] instead of its own words.
    sum: Option<u32>,
    out: String,
    /// Rows rendered in loops by [`Renderer::lagrange_rows`].
    looped_rows: usize,
    /// Whether runs of Lagrange rows are rendered as loops.
    loops: bool,
}

/// One term of a multi-scalar multiplication: `sum + scalar · point`, the product read by
/// nothing else.
struct Term {
    point: Word,
    scalar: Word,
    sum: Word,
    dst: u32,
}

impl Renderer<'_> {
    fn var(&self, v: u32) -> u64 {
        VARS + 0x20 * self.layout.word[v as usize] as u64
    }

    /// The expression reading word `i` of an operand: a literal for a constant.
    fn read(&self, word: Word, i: u32) -> String {
        match word {
            Word::Const(c) => hex(self.program.constants[(c + i) as usize]),
            Word::Var(v) => format!("mload({:#x})", self.var(v + i)),
        }
    }

    fn line(&mut self, text: &str) {
        self.out.push_str("            ");
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Copies words into the scratch buffer, from its start.
    fn stage(&mut self, words: &[(Word, u32)]) {
        for (i, (word, j)) in words.iter().enumerate() {
            let value = self.read(*word, *j);
            let at = self.scratch + 0x20 * i as u64;
            self.line(&format!("mstore({at:#x}, {value})"));
        }
    }

    fn call(&mut self, precompile: u8, input_words: u64, out: u64, out_len: u64) {
        self.call_at(precompile, self.scratch, input_words, out, out_len);
    }

    fn call_at(&mut self, precompile: u8, at: u64, input_words: u64, out: u64, out_len: u64) {
        let len = 0x20 * input_words;
        self.line(&format!(
            "if iszero(staticcall(gas(), {precompile:#x}, {at:#x}, {len:#x}, {out:#x}, {out_len:#x})) {{ fail() }}"
        ));
    }

    /// Renders the calldata reads from op `i` on as one copy and a loop of checks when they are
    /// a run of at least [`MIN_RUN`] scalars (or points) read from consecutive calldata into
    /// consecutive memory; returns how many operations it covered.
    fn run(&mut self, i: usize) -> Option<usize> {
        let ops = &self.program.ops;
        let read = |op: &Op| match op {
            Op::LoadScalar { dst, offset } => Some((*dst, *offset, 0x20u64)),
            Op::LoadPoint { dst, offset } => Some((*dst, *offset, 0x40u64)),
            _ => None,
        };
        let (dst, offset, size) = read(&ops[i])?;
        let start = self.var(dst);
        let mut n = 1;
        while let Some((d, o, s)) = ops.get(i + n).and_then(read) {
            let next = n as u64 * size;
            let phase = self.program.phases.iter().any(|(at, _)| *at == i + n);
            if s != size || o as u64 != offset as u64 + next || self.var(d) != start + next || phase {
                break;
            }
            n += 1;
        }
        let min = if size == 0x20 { MIN_RUN } else { MIN_RUN / 4 };
        if n < min {
            return None;
        }
        let (len, end) = (n as u64 * size, start + n as u64 * size);
        if size == 0x20 {
            self.line(&format!("// {n} scalars from calldata {offset:#x}, each below r"));
            self.line(&format!("calldatacopy({start:#x}, {offset:#x}, {len:#x})"));
            // Four checks per iteration; the rest after the loop.
            let looped = start + (n as u64 / 4) * 0x80;
            self.line(&format!(
                "for {{ let p := {start:#x} }} lt(p, {looped:#x}) {{ p := add(p, 0x80) }} {{ if iszero(and(and(lt(mload(p), R), lt(mload(add(p, 0x20)), R)), and(lt(mload(add(p, 0x40)), R), lt(mload(add(p, 0x60)), R)))) {{ fail() }} }}"
            ));
            for at in (looped..end).step_by(0x20) {
                self.line(&format!("if iszero(lt(mload({at:#x}), R)) {{ fail() }}"));
            }
        } else {
            self.line(&format!("// {n} points from calldata {offset:#x}, each on the curve"));
            self.line(&format!("calldatacopy({start:#x}, {offset:#x}, {len:#x})"));
            self.line(&format!(
                "for {{ let p := {start:#x} }} lt(p, {end:#x}) {{ p := add(p, 0x40) }} {{ if iszero(on_curve(mload(p), mload(add(p, 0x20)))) {{ fail() }} }}"
            ));
        }
        Some(n)
    }

    /// Renders the operations from op `i` on as one loop when they are a run of at least
    /// [`MIN_LAGRANGE_ROWS`] rows of the instances' Lagrange evaluations: pairs `c_j · v` and
    /// `x − c_j` (the same variables `v` and `x` in every row) whose constants are consecutive
    /// powers `c_j = c_0 · t^j` (of the domain's generator), written to consecutive words. The loop
    /// computes each power from the last instead of reading it as a 32-byte literal: about 90
    /// bytes of code less a row, for [`LOOPED_ROW_GAS`] more gas. Returns how many operations
    /// it covered.
    fn lagrange_rows(&mut self, i: usize) -> Option<usize> {
        if !self.loops {
            return None;
        }
        let ops = &self.program.ops;
        let constant = |word: Word| match word {
            Word::Const(c) => Some(self.program.constants[c as usize]),
            Word::Var(_) => None,
        };
        // Row j: (product's word, sum's word, c_j, v, x).
        let row = |at: usize| -> Option<(u64, u64, U256, u32, u32)> {
            let (Op::Mul { dst: m, a, b }, Op::Sub { dst: d, a: Word::Var(x), b: c2 }) =
                (ops.get(at)?, ops.get(at + 1)?)
            else {
                return None;
            };
            let (c, v) = match (*a, *b) {
                (Word::Const(_), Word::Var(v)) => (constant(*a)?, v),
                (Word::Var(v), Word::Const(_)) => (constant(*b)?, v),
                _ => return None,
            };
            let phase = self.program.phases.iter().any(|(p, _)| *p == at || *p == at + 1);
            (constant(*c2)? == c && !phase).then(|| (self.var(*m), self.var(*d), c, v, *x))
        };
        let to_fr = |c: U256| Option::<Fr>::from(Fr::from_repr(c.to_le_bytes()));
        let (start, sum, c0, v, x) = row(i)?;
        let (_, _, c1, ..) = row(i + 2)?;
        let (first, second) = (to_fr(c0)?, to_fr(c1)?);
        let step = second * Option::<Fr>::from(first.invert())?;
        let (mut n, mut power) = (1, first);
        while let Some((m, d, c, v2, x2)) = row(i + 2 * n) {
            let next = start + 0x40 * n as u64;
            if (v2, x2) != (v, x) || m != next || d != next + 0x20 || to_fr(c) != Some(power * step) {
                break;
            }
            power *= step;
            n += 1;
        }
        if n < MIN_LAGRANGE_ROWS || sum != start + 0x20 {
            return None;
        }
        let end = start + 0x40 * n as u64;
        let (v, x) = (self.var(v), self.var(x));
        let t = U256::from_le_bytes(step.to_repr());
        self.line(&format!("// {n} {LAGRANGE_LOOP}: w * v and x - w for w = w_0 * t^j"));
        self.line(&format!(
            "{{ let w := {} for {{ let p := {start:#x} }} lt(p, {end:#x}) {{ p := add(p, 0x40) }} {{ mstore(p, mulmod(w, mload({v:#x}), R)) mstore(add(p, 0x20), addmod(mload({x:#x}), sub(R, w), R)) w := mulmod(w, {}, R) }} }}",
            hex(c0),
            hex(t)
        ));
        self.looped_rows += n;
        Some(2 * n)
    }

    /// The term of a multi-scalar multiplication at op `i`: an ecMul whose product only the
    /// ecAdd right after it reads.
    fn term(&self, i: usize) -> Option<Term> {
        let ops = &self.program.ops;
        let (Op::EcMul { dst: product, point, scalar }, Op::EcAdd { dst, a, b }) = (ops.get(i)?, ops.get(i + 1)?)
        else {
            return None;
        };
        let sum = match (*a, *b) {
            (Word::Var(v), other) | (other, Word::Var(v)) if v == *product && other != Word::Var(*product) => other,
            _ => return None,
        };
        let only_here = (*product..product + 2).all(|v| self.last_read[v as usize] == Some(i + 1));
        let phase = self.program.phases.iter().any(|(at, _)| *at == i + 1);
        (only_here && !phase).then_some(Term { point: *point, scalar: *scalar, sum, dst: *dst })
    }

    /// Whether the value of `v`, written by op `i`, is read only as the running sum of the
    /// term that follows: then it stays at [`SUM`].
    fn sum_continues(&self, v: u32, i: usize) -> bool {
        let next = match self.term(i + 1) {
            Some(term) => term,
            None => return false,
        };
        next.sum == Word::Var(v) && (v..v + 2).all(|w| self.last_read[w as usize] == Some(i + 2))
    }

    /// Renders the term at op `i`: the point and scalar staged after the running sum, ecMul in
    /// place, ecAdd into the sum (or into the result's own words when nothing adds to it).
    fn render_term(&mut self, i: usize, term: Term) {
        if self.sum
            != Some(match term.sum {
                Word::Var(v) => v,
                Word::Const(_) => u32::MAX,
            })
        {
            for j in 0..2 {
                let value = self.read(term.sum, j);
                self.line(&format!("mstore({:#x}, {value})", SUM + 0x20 * j as u64));
            }
        }
        for (j, (word, k)) in [(term.point, 0), (term.point, 1), (term.scalar, 0)].into_iter().enumerate() {
            let value = self.read(word, k);
            self.line(&format!("mstore({:#x}, {value})", TERM + 0x20 * j as u64));
        }
        self.call_at(0x07, TERM, 3, TERM, 0x40);
        let keep = self.sum_continues(term.dst, i + 1);
        let out = if keep { SUM } else { self.var(term.dst) };
        self.call_at(0x06, SUM, 4, out, 0x40);
        self.sum = keep.then_some(term.dst);
    }

    fn op(&mut self, i: usize) {
        let op = &self.program.ops[i];
        self.sum = None;
        match op {
            Op::LoadScalar { dst, offset } => {
                let d = self.var(*dst);
                self.line(&format!(
                    "{{ let w := calldataload({offset:#x}) if iszero(lt(w, R)) {{ fail() }} mstore({d:#x}, w) }}"
                ));
            }
            Op::LoadPoint { dst, offset } => {
                let (d, y) = (self.var(*dst), offset + 0x20);
                self.line(&format!(
                    "{{ let x := calldataload({offset:#x}) let y := calldataload({y:#x}) if iszero(on_curve(x, y)) {{ fail() }} mstore({d:#x}, x) mstore({:#x}, y) }}",
                    d + 0x20
                ));
            }
            Op::PointFromLimbs { dst, limbs, bits } => {
                let half = limbs.len() / 2;
                let d = self.var(*dst);
                let mut code = String::from("{ ");
                for (name, part) in [("x", &limbs[..half]), ("y", &limbs[half..])] {
                    let _ = write!(code, "let {name} := 0 ");
                    for (i, limb) in part.iter().enumerate() {
                        let shift = i as u32 * bits;
                        let width = (*bits).min(256u32.saturating_sub(shift));
                        let _ = write!(
                            code,
                            "{{ let l := {} if iszero(lt(l, shl({width}, 1))) {{ fail() }} {name} := add({name}, shl({shift}, l)) }} ",
                            self.read(*limb, 0)
                        );
                    }
                }
                let _ = write!(
                    code,
                    "if iszero(on_curve(x, y)) {{ fail() }} mstore({d:#x}, x) mstore({:#x}, y) }}",
                    d + 0x20
                );
                self.line(&code);
            }
            Op::Copy { dst, src } => {
                let (d, s) = (self.var(*dst), self.read(*src, 0));
                self.line(&format!("mstore({d:#x}, {s})"));
            }
            Op::Add { dst, a, b } => {
                let (d, a, b) = (self.var(*dst), self.read(*a, 0), self.read(*b, 0));
                self.line(&format!("mstore({d:#x}, addmod({a}, {b}, R))"));
            }
            Op::Sub { dst, a, b } => {
                let (d, a, b) = (self.var(*dst), self.read(*a, 0), self.read(*b, 0));
                self.line(&format!("mstore({d:#x}, addmod({a}, sub(R, {b}), R))"));
            }
            Op::Mul { dst, a, b } => {
                let (d, a, b) = (self.var(*dst), self.read(*a, 0), self.read(*b, 0));
                self.line(&format!("mstore({d:#x}, mulmod({a}, {b}, R))"));
            }
            Op::MulAdd { dst, a, b, c } => {
                let (d, a, b, c) = (self.var(*dst), self.read(*a, 0), self.read(*b, 0), self.read(*c, 0));
                self.line(&format!("mstore({d:#x}, addmod(mulmod({a}, {b}, R), {c}, R))"));
            }
            Op::MulSub { dst, a, b, c } => {
                let (d, a, b, c) = (self.var(*dst), self.read(*a, 0), self.read(*b, 0), self.read(*c, 0));
                self.line(&format!("mstore({d:#x}, addmod({c}, sub(R, mulmod({a}, {b}, R)), R))"));
            }
            Op::BatchInvert { dsts, srcs } => {
                self.line("// batch inversion: prefix products in the results' words, one modexp, then back down");
                let n = dsts.len();
                let first = self.read(srcs[0], 0);
                self.line(&format!("mstore({:#x}, {first})", self.var(dsts[0])));
                for i in 1..n {
                    let (d, before, s) = (self.var(dsts[i]), self.var(dsts[i - 1]), self.read(srcs[i], 0));
                    self.line(&format!("mstore({d:#x}, mulmod(mload({before:#x}), {s}, R))"));
                }
                let at = self.scratch;
                for i in 0..3 {
                    self.line(&format!("mstore({:#x}, 0x20)", at + 0x20 * i));
                }
                self.line(&format!("mstore({:#x}, mload({:#x}))", at + 0x60, self.var(dsts[n - 1])));
                self.line(&format!("mstore({:#x}, sub(R, 2))", at + 0x80));
                self.line(&format!("mstore({:#x}, R)", at + 0xa0));
                self.call(0x05, 6, at, 0x20);
                self.line(&format!("{{ let inv := mload({at:#x})"));
                for i in (1..n).rev() {
                    let (d, before, s) = (self.var(dsts[i]), self.var(dsts[i - 1]), self.read(srcs[i], 0));
                    self.line(&format!(
                        "mstore({d:#x}, mulmod(mload({before:#x}), inv, R)) inv := mulmod(inv, {s}, R)"
                    ));
                }
                self.line(&format!("mstore({:#x}, inv) }}", self.var(dsts[0])));
            }
            Op::Pow { dst, base, exp } => {
                self.line("// base^exp mod r (modexp precompile)");
                let at = self.scratch;
                for i in 0..3 {
                    self.line(&format!("mstore({:#x}, 0x20)", at + 0x20 * i));
                }
                let (b, e) = (self.read(*base, 0), self.read(*exp, 0));
                self.line(&format!("mstore({:#x}, {b})", at + 0x60));
                self.line(&format!("mstore({:#x}, {e})", at + 0x80));
                self.line(&format!("mstore({:#x}, R)", at + 0xa0));
                let d = self.var(*dst);
                self.call(0x05, 6, d, 0x20);
            }
            Op::Squeeze { dst, hash, start, len } => {
                let (d, h, s) = (self.var(*dst), self.var(*hash), self.var(*start));
                self.line(&format!("// challenge: keccak256 of the {len} transcript words since the last one"));
                if *len == 1 {
                    let at = self.scratch;
                    self.line(&format!(
                        "{{ mstore({at:#x}, mload({s:#x})) mstore8({:#x}, 1) let h := keccak256({at:#x}, 0x21) mstore({h:#x}, h) mstore({d:#x}, mod(h, R)) }}",
                        at + 0x20
                    ));
                } else {
                    self.line(&format!(
                        "{{ let h := keccak256({s:#x}, {:#x}) mstore({h:#x}, h) mstore({d:#x}, mod(h, R)) }}",
                        0x20 * *len as u64
                    ));
                }
            }
            Op::EcAdd { dst, a, b } => {
                self.stage(&[(*a, 0), (*a, 1), (*b, 0), (*b, 1)]);
                let d = self.var(*dst);
                self.call(0x06, 4, d, 0x40);
            }
            Op::EcMul { dst, point, scalar } => {
                // The first product of a multi-scalar multiplication goes where the sum is kept.
                let (stage, out) = match self.sum_continues(*dst, i) {
                    true => (TERM, SUM),
                    false => (self.scratch, self.var(*dst)),
                };
                for (j, (word, k)) in [(*point, 0), (*point, 1), (*scalar, 0)].into_iter().enumerate() {
                    let value = self.read(word, k);
                    self.line(&format!("mstore({:#x}, {value})", stage + 0x20 * j as u64));
                }
                self.call_at(0x07, stage, 3, out, 0x40);
                if out == SUM {
                    self.sum = Some(*dst);
                }
            }
            Op::EcMulAdd { dst, acc, point, scalar } => {
                // acc at the scratch's start, the product right after it, then ecAdd of both.
                self.stage(&[(*acc, 0), (*acc, 1), (*point, 0), (*point, 1), (*scalar, 0)]);
                let product = self.scratch + 0x40;
                self.call_at(0x07, product, 3, product, 0x40);
                let d = self.var(*dst);
                self.call(0x06, 4, d, 0x40);
            }
            Op::Pairing { lhs, rhs, g2 } => {
                self.line("// the pairing check e(lhs, G2) * e(rhs, -s*G2) == 1 decides the KZG openings");
                let words: Vec<(Word, u32)> = [(*lhs, 0), (*lhs, 1)]
                    .into_iter()
                    .chain((0..4).map(|i| (*g2, i)))
                    .chain([(*rhs, 0), (*rhs, 1)])
                    .chain((4..8).map(|i| (*g2, i)))
                    .collect();
                self.stage(&words);
                let at = self.scratch;
                self.call(0x08, 12, at, 0x20);
                self.line(&format!("if iszero(mload({at:#x})) {{ fail() }}"));
            }
            Op::AssertEq { a, b, words } => {
                for i in 0..*words {
                    let (a, b) = (self.read(*a, i), self.read(*b, i));
                    self.line(&format!("if iszero(eq({a}, {b})) {{ fail() }}"));
                }
            }
        }
    }
}

/// The direct verifier's Solidity source.
pub fn render_direct(program: &Program, header: &Header) -> String {
    render_direct_counting(program, header).0
}

/// The direct verifier's Solidity source, and how many rows of Lagrange denominators it computes
/// in loops (each [`LOOPED_ROW_GAS`] more than straight-line code): straight-line code unless its
/// estimated size passes [`ROLL_ABOVE`] of EIP-170's limit, so that a verifier that fits as it
/// is costs no more gas, and one that would not fits with loops.
pub fn render_direct_counting(program: &Program, header: &Header) -> (String, usize) {
    let straight = render_direct_with(program, header, false);
    let limit = super::solidity::MAX_RUNTIME_BYTES as f64 * ROLL_ABOVE;
    if super::estimate::estimate_bytes(&straight.0) <= limit {
        return straight;
    }
    render_direct_with(program, header, true)
}

/// The direct verifier's Solidity source, its Lagrange rows in loops when `loops` (see
/// [`render_direct_counting`]), and how many rows the loops compute.
pub fn render_direct_with(program: &Program, header: &Header, loops: bool) -> (String, usize) {
    let layout = program.layout();
    let scratch = VARS + 0x20 * layout.words as u64;
    let mut last_read = vec![None; program.vars as usize];
    for (i, op) in program.ops.iter().enumerate() {
        op.reads(|word, words| {
            if let Word::Var(v) = word {
                (v..v + words).for_each(|v| last_read[v as usize] = Some(i));
            }
        });
    }
    let mut r = Renderer { program, layout, scratch, last_read, sum: None, out: String::new(), looped_rows: 0, loops };
    let mut i = 0;
    while i < program.ops.len() {
        if let Some((_, phase)) = program.phases.iter().find(|(at, _)| *at == i) {
            r.line("");
            r.line(&format!("// ---- {phase}"));
        }
        if let Some(term) = r.term(i) {
            r.render_term(i, term);
            i += 2;
            continue;
        }
        if let Some(n) = r.lagrange_rows(i) {
            r.sum = None;
            i += n;
            continue;
        }
        i += r.run(i).unwrap_or_else(|| {
            r.op(i);
            1
        });
    }
    let (body, looped_rows) = (r.out, r.looped_rows);
    let (title, digest) = (&header.title, &header.circuit_digest);
    let (n, len) = (program.num_instances, program.calldata_len);
    let proof_len = len - 0x20 * n;
    let (rm, qm) = (hex(scalar_modulus()), hex(base_modulus()));
    let source = format!(
        r#"// SPDX-License-Identifier: MIT
// Generated by zkinfer from a verifying key; regenerate it, do not edit it.
pragma solidity ^0.8.19;

/// @title {title}
/// @notice Verifies a Halo2 proof (KZG on BN254, SHPLONK openings, Keccak transcript) of the
/// circuit {digest}.
/// Calldata, with no selector: {n} public instances as 32-byte big-endian words, each below
/// the scalar field's modulus, then the {proof_len}-byte proof; {len} bytes in all, no more, no
/// less. Returns nothing when the proof is valid for the instances; reverts otherwise.
contract Halo2Verifier {{
    fallback() external {{
        assembly {{
            // BN254's scalar field modulus r: every instance, evaluation and challenge is below it.
            let R := {rm}

            // A point read from calldata must be on the curve y^2 = x^3 + 3, its coordinates below
            // the base field's modulus q.
            function on_curve(x, y) -> ok {{
                let q := {qm}
                ok := and(and(lt(x, q), lt(y, q)), eq(mulmod(y, y, q), addmod(mulmod(mulmod(x, x, q), x, q), 3, q)))
            }}

            // Any failed check reverts at once.
            function fail() {{
                revert(0, 0)
            }}

            if iszero(eq(calldatasize(), {len:#x})) {{ fail() }}
{body}
            return(0, 0)
        }}
    }}
}}
"#
    );
    (source, looped_rows)
}
