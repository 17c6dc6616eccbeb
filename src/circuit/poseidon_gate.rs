//! The Poseidon gate: the commitments' permutation (width 5, rate 4, 8 full and 60 partial
//! rounds, x^5; see [`super::commit`]) in a region of five advice columns of our own beside
//! halo2-base's, at 58 rows (290 cells) per permutation instead of the ~4,400 cells halo2-base's
//! gate spends on it.
//!
//! Every step takes two rows, `A` and `B`, and writes the state it produces on the row after
//! them, which is the next step's `A`:
//!
//! ```text
//! full round     A: x0..x4            B: y_j = (x_j + c_j)^2
//!                next_i = Σ_j M_ij · y_j^2 · (x_j + c_j)
//! three partial  A: x0..x4            B: y0, z1, y1, z2, y2
//! rounds         y0 = (x0 + e1)^2, v1 = y0^2 (x0 + e1), L1 = M (v1, x1, x2, x3, x4), z1 = L1_0,
//!                y1 = (z1 + e2)^2, v2 = y1^2 (z1 + e2), L2 = M (v2, L1_1, .., L1_4), z2 = L2_0,
//!                y2 = (z2 + e3)^2, v3 = y2^2 (z2 + e3), next = M (v3, L2_1, .., L2_4) + d
//! absorb         A: the state         B: _, w1, w2, w3, w4 (copies of the words)
//!                next_i = a · x_i + w_i + p_i     (w_0 = 0)
//! ```
//!
//! `M` is the MDS matrix; `c`, `e`, `a` and `p` are fixed columns (five, read on both rows of a
//! step), and so are the constant terms `d` turns into when the gate checks the rounds
//! backwards, through `M⁻¹`, which keeps every check to one S-box product and a short sum (the
//! EVM verifier evaluates each term). Three partial rounds fold into one step because only one word of the state goes
//! through the S-box in each: the round constants of the four others pass through `M` linearly
//! and are folded into `e2`, `e3` and `d` off-circuit. In an absorb step `a` is 0 for a hash's
//! first chunk (its capacity starts at `p_0 = 2^64`) and 1 after, and `p` adds the sponge's
//! padding; a chunk shorter than the rate copies zeros into its empty word slots. Three fixed
//! selectors say which step a row `A` starts; every constraint has degree at most 4, as
//! halo2-base's lookups do, so the circuit's degree does not grow. A hash's output is the
//! second word of the state after its last permutation, copy-constrained to the virtual cell
//! the rest of the circuit reads.

use std::ops::{Add, Mul, Sub};
use std::sync::OnceLock;

use halo2_base::halo2_proofs::circuit::{Layouter, Value};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::plonk::{Advice, Column, ConstraintSystem, Error, Expression, Fixed};
use halo2_base::halo2_proofs::poly::Rotation;
use halo2_base::utils::halo2::{constrain_virtual_equals_external, raw_assign_advice, raw_assign_fixed};
use halo2_base::virtual_region::copy_constraints::SharedCopyConstraintManager;
use halo2_base::{AssignedValue, Context};
use poseidon_primitives::poseidon::primitives::Spec;

use super::commit::{POSEIDON_RATE, POSEIDON_R_F, POSEIDON_R_P, POSEIDON_T};
use super::field::fe;
use super::linear_gate::copy_into_region;
use super::mutation::keep;

const T: usize = POSEIDON_T;
const RATE: usize = POSEIDON_RATE;
/// Partial rounds per step.
const PARTIAL_PER_STEP: usize = 3;
/// Rows a permutation takes with its absorb step.
pub const ROWS_PER_PERMUTATION: usize = 2 * (1 + POSEIDON_R_F + POSEIDON_R_P / PARTIAL_PER_STEP);
/// Advice columns the region adds (four of them with equality).
pub const ADVICE_COLUMNS: usize = T;
/// Fixed columns the region adds: five constants and three selectors.
pub const FIXED_COLUMNS: usize = T + 3;

/// The commitments' Poseidon as a spec of PSE's primitives, the source of the round constants
/// and the MDS matrix (halo2-base derives its own from the same generator).
#[derive(Debug)]
pub struct CommitmentSpec;

impl Spec<Fr, T, RATE> for CommitmentSpec {
    fn full_rounds() -> usize {
        POSEIDON_R_F
    }
    fn partial_rounds() -> usize {
        POSEIDON_R_P
    }
    fn sbox(val: Fr) -> Fr {
        val.square().square() * val
    }
    fn secure_mds() -> usize {
        0
    }
}

type Mds = [[Fr; T]; T];

/// Checks of a partial step besides its three squares: `W_0 = v3`, `P_0 = v2`, `Q_0 = v1`
/// and `Q_i = x_i` (see [`partial_checks`]).
const CHECKS: usize = PARTIAL_PER_STEP + T - 1;
/// Atoms of a partial step's checks: the next state's five words, then `z1` and `z2`.
const ATOMS: usize = T + 2;

/// One step of a permutation, with the constants its rows hold.
// 28 of them, built once: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
enum Step {
    Full {
        c: [Fr; T],
    },
    Partial {
        /// The S-box inputs' constants.
        e: [Fr; PARTIAL_PER_STEP],
        /// The constant part of the step's output.
        d: [Fr; T],
        /// The checks' constant terms.
        k: [Fr; CHECKS],
    },
}

impl Step {
    /// The five constants on row `A` and on row `B`.
    fn fixed(&self) -> ([Fr; T], [Fr; T]) {
        match *self {
            Step::Full { c } => (c, [Fr::zero(); T]),
            Step::Partial { e, k, .. } => ([e[0], e[1], e[2], k[0], k[1]], [k[2], k[3], k[4], k[5], k[6]]),
        }
    }
}

/// An affine form `Σ c_a · atom_a + k` in a partial step's atoms.
#[derive(Clone, Copy, Debug)]
struct Affine {
    c: [Fr; ATOMS],
    k: Fr,
}

impl Affine {
    fn atom(a: usize) -> Self {
        Affine { c: std::array::from_fn(|i| if i == a { Fr::one() } else { Fr::zero() }), k: Fr::zero() }
    }
}

/// `M⁻¹ · v` for a vector of forms.
fn unmix(inverse: &Mds, v: &[Affine; T]) -> [Affine; T] {
    std::array::from_fn(|i| {
        let mut out = Affine { c: [Fr::zero(); ATOMS], k: Fr::zero() };
        for (m, form) in inverse[i].iter().zip(v) {
            for (o, c) in out.c.iter_mut().zip(&form.c) {
                *o += *m * c;
            }
            out.k += *m * form.k;
        }
        out
    })
}

/// A partial step's checks as forms in its atoms, its S-box outputs and its state words on the
/// other side. Run backwards from the step's output, through `M⁻¹`, each check holds one S-box
/// output and at most seven advice words, instead of the three nested matrix products of the
/// forward equations (which the EVM verifier would evaluate term by term): `W = M⁻¹ (next -
/// d)` is `(v3, L2_1..L2_4)`, so `L2 = (z2, W_1..W_4)` and `P = M⁻¹ L2` is `(v2, L1_1..L1_4)`,
/// so `L1 = (z1, P_1..P_4)` and `Q = M⁻¹ L1` is `(v1, x1..x4)`. `M` is invertible, so these
/// checks hold exactly when the forward equations do.
fn partial_checks(inverse: &Mds, d: &[Fr; T]) -> [Affine; CHECKS] {
    let after = std::array::from_fn(|i| Affine { k: -d[i], ..Affine::atom(i) });
    let w = unmix(inverse, &after);
    let p = unmix(inverse, &[Affine::atom(T + 1), w[1], w[2], w[3], w[4]]);
    let q = unmix(inverse, &[Affine::atom(T), p[1], p[2], p[3], p[4]]);
    [w[0], p[0], q[0], q[1], q[2], q[3], q[4]]
}

struct Constants {
    mds: Mds,
    inverse: Mds,
    steps: Vec<Step>,
    /// The coefficients of the partial checks (the same in every step; their constant terms
    /// are the step's `k`).
    partial: [[Fr; ATOMS]; CHECKS],
}

/// `Σ c_a · atoms_a` over the non-zero coefficients.
fn dot<V: Val>(c: &[Fr; ATOMS], atoms: &[V; ATOMS]) -> V {
    let mut terms = c.iter().zip(atoms).filter(|(f, _)| **f != Fr::zero());
    let (f, a) = terms.next().expect("a form with a term");
    terms.fold(V::constant(*f) * a.clone(), |sum, (f, a)| sum + V::constant(*f) * a.clone())
}

fn constants() -> &'static Constants {
    static CONSTANTS: OnceLock<Constants> = OnceLock::new();
    CONSTANTS.get_or_init(|| {
        let (rc, mds, inverse) = super::commit::rounds();
        let half = POSEIDON_R_F / 2;
        let full = |r: usize| Step::Full { c: rc[r] };
        let mut steps: Vec<Step> = (0..half).map(full).collect();
        let mut partial = [[Fr::zero(); ATOMS]; CHECKS];
        for first in (half..half + POSEIDON_R_P).step_by(PARTIAL_PER_STEP) {
            // The constants of words 1..4 go through M linearly: carry them as `d` (the part of
            // the state that is constant) into the next S-box input and the step's output.
            let mut d = [Fr::zero(); T];
            let mut e = [Fr::zero(); PARTIAL_PER_STEP];
            for (i, e) in e.iter_mut().enumerate() {
                let c = rc[first + i];
                *e = d[0] + c[0];
                let mut linear = [Fr::zero(); T];
                for j in 1..T {
                    linear[j] = d[j] + c[j];
                }
                d = apply(mds, &linear);
            }
            let checks = partial_checks(inverse, &d);
            partial = checks.map(|f| f.c);
            steps.push(Step::Partial { e, d, k: checks.map(|f| f.k) });
        }
        steps.extend((half + POSEIDON_R_P..POSEIDON_R_F + POSEIDON_R_P).map(full));
        Constants { mds: *mds, inverse: *inverse, steps, partial }
    })
}

/// Values the constraints are written over: field elements (the witness) and expressions (the
/// gate), so that both come from the same code.
trait Val: Clone + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    fn constant(f: Fr) -> Self;
}

impl Val for Fr {
    fn constant(f: Fr) -> Self {
        f
    }
}

impl Val for Expression<Fr> {
    fn constant(f: Fr) -> Self {
        Expression::Constant(f)
    }
}

fn apply<V: Val>(mds: &Mds, b: &[V; T]) -> [V; T] {
    std::array::from_fn(|i| {
        (1..T).fold(V::constant(mds[i][0]) * b[0].clone(), |sum, j| sum + V::constant(mds[i][j]) * b[j].clone())
    })
}

/// `y² · u`: the S-box output from its input `u` and the square `y` the row holds.
fn fifth<V: Val>(y: &V, u: &V) -> V {
    y.clone() * y.clone() * u.clone()
}

/// The constraints of a step (zero on an honest witness), from its rows `A` (`x`), `B` (`b`) and
/// the next state, with the constants of both rows. A full round is checked backwards too:
/// `(M⁻¹ next)_j = y_j² · (x_j + c_j)`, one product per check.
fn step_constraints<V: Val>(step: Step, x: &[V; T], b: &[V; T], next: &[V; T], fa: &[V; T], fb: &[V; T]) -> Vec<V> {
    let Constants { inverse, partial: forms, .. } = constants();
    match step {
        Step::Full { .. } => {
            let u: [V; T] = std::array::from_fn(|j| x[j].clone() + fa[j].clone());
            let before = apply(inverse, next);
            let squares = (0..T).map(|j| b[j].clone() - u[j].clone() * u[j].clone());
            squares.chain((0..T).map(|j| before[j].clone() - fifth(&b[j], &u[j]))).collect()
        }
        Step::Partial { .. } => {
            let (y0, z1, y1, z2, y2) = (&b[0], &b[1], &b[2], &b[3], &b[4]);
            let u1 = x[0].clone() + fa[0].clone();
            let u2 = z1.clone() + fa[1].clone();
            let u3 = z2.clone() + fa[2].clone();
            let atoms: [V; ATOMS] = std::array::from_fn(|a| match a {
                a if a < T => next[a].clone(),
                a if a == T => z1.clone(),
                _ => z2.clone(),
            });
            let k = [
                fa[3].clone(),
                fa[4].clone(),
                fb[0].clone(),
                fb[1].clone(),
                fb[2].clone(),
                fb[3].clone(),
                fb[4].clone(),
            ];
            let sides = [
                fifth(y2, &u3),
                fifth(y1, &u2),
                fifth(y0, &u1),
                x[1].clone(),
                x[2].clone(),
                x[3].clone(),
                x[4].clone(),
            ];
            let mut constraints =
                vec![y0.clone() - u1.clone() * u1, y1.clone() - u2.clone() * u2, y2.clone() - u3.clone() * u3];
            for ((form, k), side) in forms.iter().zip(k).zip(sides) {
                constraints.push(dot(form, &atoms) + k - side);
            }
            constraints
        }
    }
}

/// The absorb step's constraints: `next_i = a · x_i + w_i + p_i` with `a = fb_0`, `p = fa`.
fn absorb_constraints<V: Val>(x: &[V; T], b: &[V; T], next: &[V; T], fa: &[V; T], fb: &[V; T]) -> Vec<V> {
    (0..T)
        .map(|i| {
            let kept = fb[0].clone() * x[i].clone() + fa[i].clone();
            let absorbed = if i == 0 { kept } else { kept + b[i].clone() };
            next[i].clone() - absorbed
        })
        .collect()
}

/// The honest row `B` and next state of a step from row `A`.
fn step_witness(step: Step, x: &[Fr; T]) -> ([Fr; T], [Fr; T]) {
    let mds = &constants().mds;
    match step {
        Step::Full { c } => {
            let u: [Fr; T] = std::array::from_fn(|j| x[j] + c[j]);
            let b = u.map(|u| u.square());
            (b, apply(mds, &std::array::from_fn(|j| fifth(&b[j], &u[j]))))
        }
        Step::Partial { e, d, .. } => {
            let u1 = x[0] + e[0];
            let y0 = u1.square();
            let l1 = apply(mds, &[fifth(&y0, &u1), x[1], x[2], x[3], x[4]]);
            let u2 = l1[0] + e[1];
            let y1 = u2.square();
            let l2 = apply(mds, &[fifth(&y1, &u2), l1[1], l1[2], l1[3], l1[4]]);
            let u3 = l2[0] + e[2];
            let y2 = u3.square();
            let out = apply(mds, &[fifth(&y2, &u3), l2[1], l2[2], l2[3], l2[4]]);
            ([y0, l1[0], y1, l2[0], y2], std::array::from_fn(|i| out[i] + d[i]))
        }
    }
}

/// The region's columns.
#[derive(Clone, Debug)]
pub struct PoseidonConfig {
    s: [Column<Advice>; T],
    f: [Column<Fixed>; T],
    q_full: Column<Fixed>,
    q_partial: Column<Fixed>,
    q_absorb: Column<Fixed>,
}

impl PoseidonConfig {
    /// Configures the columns and the gate.
    pub fn configure(meta: &mut ConstraintSystem<Fr>) -> Self {
        let s: [Column<Advice>; T] = std::array::from_fn(|_| meta.advice_column());
        // Words come in through columns 1..4; the output leaves through column 1.
        for &c in &s[1..] {
            meta.enable_equality(c);
        }
        let f: [Column<Fixed>; T] = std::array::from_fn(|_| meta.fixed_column());
        let (q_full, q_partial, q_absorb) = (meta.fixed_column(), meta.fixed_column(), meta.fixed_column());
        let config = PoseidonConfig { s, f, q_full, q_partial, q_absorb };
        // Any step's constants do: the constraints' shapes do not depend on their values.
        let (full, partial) = (constants().steps[0], constants().steps[POSEIDON_R_F / 2]);
        meta.create_gate("poseidon", |m| {
            let mut advice =
                |r: i32| -> [Expression<Fr>; T] { std::array::from_fn(|j| m.query_advice(s[j], Rotation(r))) };
            let (x, b, next) = (advice(0), advice(1), advice(2));
            let fa: [Expression<Fr>; T] = std::array::from_fn(|j| m.query_fixed(f[j], Rotation::cur()));
            let fb: [Expression<Fr>; T] = std::array::from_fn(|j| m.query_fixed(f[j], Rotation::next()));
            let mut selected = |q: Column<Fixed>, constraints: Vec<Expression<Fr>>| {
                let q = m.query_fixed(q, Rotation::cur());
                constraints.into_iter().map(move |c| q.clone() * c)
            };
            let full = selected(q_full, step_constraints(full, &x, &b, &next, &fa, &fb));
            let partial = selected(q_partial, step_constraints(partial, &x, &b, &next, &fa, &fb));
            let absorb = selected(q_absorb, absorb_constraints(&x, &b, &next, &fa, &fb));
            full.chain(partial).chain(absorb).collect::<Vec<_>>()
        });
        config
    }
}

/// What a row `A` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A row `B`, or the state after the last step.
    None,
    Full,
    Partial,
    Absorb,
}

#[derive(Clone, Debug)]
struct Row {
    s: [Fr; T],
    f: [Fr; T],
    kind: Kind,
}

/// The Poseidon region as layout fills it: the rows of every hash, the word cells they copy and
/// the virtual cells of the outputs.
#[derive(Clone, Debug, Default)]
pub struct PoseidonRegion {
    rows: Vec<Row>,
    /// `(row, column, cell)`: a word (or a zero) copied into the region.
    words: Vec<(usize, usize, AssignedValue<Fr>)>,
    /// `(row, virtual cell)` of every hash's output (column 1 of that row).
    outputs: Vec<(usize, AssignedValue<Fr>)>,
    /// The zero copied into a short chunk's empty slots.
    zero: Option<AssignedValue<Fr>>,
    permutations: usize,
    #[cfg(test)]
    tamper: Option<PoseidonTamper>,
}

impl PoseidonRegion {
    /// Rows the region holds cells on.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Permutations laid out.
    pub fn permutations(&self) -> usize {
        self.permutations
    }

    /// Hashes `words` as [`super::commit::hash_words`] does and returns the hash as a virtual
    /// cell the region's copy constraints bind.
    pub fn push_hash(&mut self, ctx: &mut Context<Fr>, words: &[AssignedValue<Fr>]) -> AssignedValue<Fr> {
        let zero = *self.zero.get_or_insert_with(|| ctx.load_zero());
        if self.rows.is_empty() {
            self.rows.push(Row { s: [Fr::zero(); T], f: [Fr::zero(); T], kind: Kind::None });
        }
        let mut chunks: Vec<&[AssignedValue<Fr>]> = words.chunks(RATE).collect();
        if words.len() % RATE == 0 {
            // A whole last chunk is followed by one of padding alone.
            chunks.push(&[]);
        }
        for (i, chunk) in chunks.into_iter().enumerate() {
            let a = self.rows.len() - 1;
            let mut p = [Fr::zero(); T];
            if i == 0 {
                p[0] = fe(1i128 << 64);
            }
            if chunk.len() < RATE {
                p[1 + chunk.len()] = Fr::one();
            }
            let mut w = [Fr::zero(); T];
            for j in 0..RATE {
                let cell = chunk.get(j).copied().unwrap_or(zero);
                w[1 + j] = *cell.value();
                self.words.push((a + 1, 1 + j, cell));
            }
            #[cfg(test)]
            if self.tamper == Some(PoseidonTamper::WrongWord) {
                w[1] += Fr::one();
            }
            let kept = if i == 0 { Fr::zero() } else { Fr::one() };
            let x = self.rows[a].s;
            let next = std::array::from_fn(|j| kept * x[j] + w[j] + p[j]);
            self.push_step(Kind::Absorb, p, w, [kept, Fr::zero(), Fr::zero(), Fr::zero(), Fr::zero()], next);
            for (n, &step) in constants().steps.iter().enumerate() {
                let a = self.rows.len() - 1;
                #[allow(unused_mut)]
                let (mut b, mut next) = step_witness(step, &self.rows[a].s);
                #[cfg(test)]
                self.tamper_step(step, n, &self.rows[a].s, &mut b, &mut next);
                let _ = n;
                let (fa, fb) = step.fixed();
                let kind = if matches!(step, Step::Full { .. }) { Kind::Full } else { Kind::Partial };
                self.push_step(kind, fa, b, fb, next);
            }
            self.permutations += 1;
        }
        let row = self.rows.len() - 1;
        #[allow(unused_mut)]
        let mut value = self.rows[row].s[1];
        #[cfg(test)]
        if self.tamper == Some(PoseidonTamper::WrongOutput) {
            value += Fr::one();
        }
        let cell = ctx.copy_manager.lock().expect("copy manager lock").mock_external_assigned(value);
        self.outputs.push((row, cell));
        cell
    }

    /// Turns the last row into a step's row `A` and appends its row `B` and the next state.
    fn push_step(&mut self, kind: Kind, fa: [Fr; T], b: [Fr; T], fb: [Fr; T], next: [Fr; T]) {
        let a = self.rows.last_mut().expect("the region has a state row");
        a.kind = kind;
        a.f = fa;
        self.rows.push(Row { s: b, f: fb, kind: Kind::None });
        self.rows.push(Row { s: next, f: [Fr::zero(); T], kind: Kind::None });
    }

    /// Writes the region into the circuit; with `copies`, also its copy constraints (key
    /// generation records them once: the manager keeps them for the second pass).
    pub fn assign(
        &self,
        config: &PoseidonConfig,
        layouter: &mut impl Layouter<Fr>,
        copies: Option<&SharedCopyConstraintManager<Fr>>,
        fixed: bool,
    ) -> Result<(), Error> {
        layouter.assign_region(
            || "poseidon",
            |mut region| {
                let mut cells = Vec::with_capacity(if copies.is_some() { self.rows.len() } else { 0 });
                for (r, row) in self.rows.iter().enumerate() {
                    let assigned: [_; T] = std::array::from_fn(|j| {
                        raw_assign_advice(&mut region, config.s[j], r, Value::known(row.s[j])).cell()
                    });
                    if copies.is_some() {
                        cells.push(assigned);
                    }
                    if fixed {
                        for (j, &v) in row.f.iter().enumerate() {
                            if v != Fr::zero() {
                                raw_assign_fixed(&mut region, config.f[j], r, v);
                            }
                        }
                        let q = match row.kind {
                            Kind::None => None,
                            Kind::Full => Some(config.q_full),
                            Kind::Partial => Some(config.q_partial),
                            Kind::Absorb => Some(config.q_absorb),
                        };
                        if let Some(q) = q {
                            raw_assign_fixed(&mut region, q, r, Fr::one());
                        }
                    }
                }
                if let Some(copies) = copies {
                    let mut copies = copies.lock().expect("copy manager lock");
                    if keep("poseidon: word copy") {
                        for &(r, j, source) in &self.words {
                            copy_into_region(&mut copies, source, cells[r][j]);
                        }
                    }
                    for &(r, cell) in &self.outputs {
                        constrain_virtual_equals_external(&mut region, cell, cells[r][1], &mut copies);
                    }
                }
                Ok(())
            },
        )
    }

    /// Test hook: the prover's deviation from the honest witness, applied as hashes are pushed.
    #[cfg(test)]
    pub fn set_tamper(&mut self, tamper: PoseidonTamper) {
        self.tamper = Some(tamper);
    }

    #[cfg(test)]
    fn tamper_step(&self, step: Step, n: usize, x: &[Fr; T], b: &mut [Fr; T], next: &mut [Fr; T]) {
        match self.tamper {
            // The step computed with another round constant than the circuit's.
            Some(PoseidonTamper::WrongRoundConstant { step: at }) if at == n => {
                let wrong = match step {
                    Step::Full { mut c } => {
                        c[2] += Fr::one();
                        Step::Full { c }
                    }
                    Step::Partial { mut e, d, k } => {
                        e[1] += Fr::one();
                        Step::Partial { e, d, k }
                    }
                };
                (*b, *next) = step_witness(wrong, x);
            }
            Some(PoseidonTamper::WrongSquare { step: at }) if at == n => b[3] += Fr::one(),
            Some(PoseidonTamper::WrongState { step: at }) if at == n => next[4] += Fr::one(),
            _ => {}
        }
    }
}

/// How a test's prover deviates from the honest witness of the region.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoseidonTamper {
    /// Step `step` of every permutation computed with a wrong round constant.
    WrongRoundConstant {
        /// The step (0..28).
        step: usize,
    },
    /// A wrong intermediate (a square, or a partial round's state word) on row `B` of a step.
    WrongSquare {
        /// The step.
        step: usize,
    },
    /// A wrong word in the state a step writes (and the permutation carried on from it).
    WrongState {
        /// The step.
        step: usize,
    },
    /// The first word absorbed one more than the cell it copies.
    WrongWord,
    /// The hash handed downstream one more than the region's.
    WrongOutput,
}

#[cfg(test)]
mod tests {
    use halo2_base::gates::GateInstructions;
    use halo2_base::halo2_proofs::dev::MockProver;
    use halo2_base::QuantumCell;

    use super::*;
    use crate::circuit::commit::hash_words;
    use crate::circuit::lookup::ModelCircuit;

    const K: u32 = 10;

    /// Word lists of every length class: empty, a short chunk, a whole chunk (then one of
    /// padding), and several chunks.
    fn word_lists() -> Vec<Vec<Fr>> {
        vec![
            vec![],
            vec![fe(7)],
            (1..=4).map(fe).collect(),
            (0..9).map(|i| fe(i * 1_000_003 - 17)).collect(),
            vec![-Fr::one(); 3],
        ]
    }

    /// Hashes every word list in one region, the hashes public through halo2-base cells; whether
    /// the MockProver accepts. The honest hashes must equal halo2-base's.
    fn accepted(tamper: Option<PoseidonTamper>) -> bool {
        let mut base = crate::circuit::soundness::mock_builder(K as usize);
        let gate = base.range_chip().gate;
        let ctx = base.main(0);
        let mut region = PoseidonRegion::default();
        if let Some(t) = tamper {
            region.set_tamper(t);
        }
        let mut public = Vec::new();
        for words in word_lists() {
            let cells = ctx.assign_witnesses(words.iter().copied());
            let hash = region.push_hash(ctx, &cells);
            if tamper.is_none() {
                assert_eq!(*hash.value(), hash_words(&words), "{} words: the region's hash", words.len());
            }
            public.push(gate.add(ctx, hash, QuantumCell::Constant(Fr::zero())));
        }
        let instances = public.iter().map(|c| *c.value()).collect();
        base.assigned_instances[0] = public;
        base.calculate_params(Some(20));
        let mut circuit = ModelCircuit::from_base(base);
        circuit.poseidon = Some(region);
        MockProver::run(K, &circuit, vec![instances]).expect("mock prover runs").verify().is_ok()
    }

    #[test]
    fn the_constraints_hold_on_the_honest_steps() {
        let x = [fe(3), fe(-5), fe(8), fe(1 << 40), fe(11)];
        for &step in &constants().steps {
            let (b, next) = step_witness(step, &x);
            let (fa, fb) = step.fixed();
            assert!(step_constraints(step, &x, &b, &next, &fa, &fb).iter().all(|c| *c == Fr::zero()));
            let mut wrong = next;
            wrong[0] += Fr::one();
            assert!(step_constraints(step, &x, &b, &wrong, &fa, &fb).iter().any(|c| *c != Fr::zero()));
        }
        assert_eq!(constants().steps.len() * 2 + 2, ROWS_PER_PERMUTATION);
    }

    #[test]
    fn the_region_hashes_as_halo2_base_does_and_the_honest_witness_passes() {
        assert!(accepted(None));
    }

    #[test]
    fn every_deviation_from_the_honest_region_is_rejected() {
        let mut tampers = vec![PoseidonTamper::WrongWord, PoseidonTamper::WrongOutput];
        // A full step at each end, partial steps at their ends and in the middle.
        for step in [0, 3, 4, 13, 23, 24, 27] {
            tampers.push(PoseidonTamper::WrongRoundConstant { step });
            tampers.push(PoseidonTamper::WrongSquare { step });
            tampers.push(PoseidonTamper::WrongState { step });
        }
        for t in tampers {
            assert!(!accepted(Some(t)), "{t:?} must be rejected");
        }
    }

    #[test]
    fn a_dropped_word_copy_lets_a_wrong_word_pass() {
        // The copies carry the words in: without them the gate hashes whatever the prover wrote.
        assert!(crate::circuit::mutation::without("poseidon: word copy", || accepted(Some(PoseidonTamper::WrongWord))));
    }

    #[test]
    fn the_gate_keeps_the_circuit_degree() {
        let mut meta = ConstraintSystem::<Fr>::default();
        PoseidonConfig::configure(&mut meta);
        assert_eq!(meta.degree(), 4);
    }
}
