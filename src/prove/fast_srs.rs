//! A fast generator for the development SRS. `ParamsKZG::setup` spends two full scalar
//! multiplications of the generator per point (powers of τ, then the Lagrange basis); here both
//! use a fixed-base window table (32 mixed additions per point), run in parallel, and are brought
//! to affine form with batched inversions. With the same τ the result equals `ParamsKZG::setup`.

use halo2_base::halo2_proofs::arithmetic::parallelize;
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine, G2Affine, G1};
use halo2_base::halo2_proofs::halo2curves::ff::{BatchInvert, Field, PrimeField};
use halo2_base::halo2_proofs::halo2curves::group::prime::PrimeCurveAffine;
use halo2_base::halo2_proofs::halo2curves::group::{Curve, Group};
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use rand_chacha::rand_core::{RngCore, SeedableRng};

const WINDOW_BITS: usize = 8;
const WINDOWS: usize = 256 / WINDOW_BITS;

/// Multiples of one point: `table[w][j] = j · 2^(8w) · P`, so that `s · P` is the sum of one entry
/// per byte of `s`.
struct FixedBaseTable {
    windows: Vec<Vec<G1Affine>>,
}

impl FixedBaseTable {
    fn new(base: G1Affine) -> Self {
        let mut windows = Vec::with_capacity(WINDOWS);
        let mut window_base: G1 = base.into();
        for _ in 0..WINDOWS {
            let mut row = vec![G1::identity(); 1 << WINDOW_BITS];
            for j in 1..row.len() {
                row[j] = row[j - 1] + window_base;
            }
            let mut affine = vec![G1Affine::identity(); row.len()];
            G1::batch_normalize(&row, &mut affine);
            window_base = row[row.len() - 1] + window_base;
            windows.push(affine);
        }
        FixedBaseTable { windows }
    }

    fn mul(&self, scalar: &Fr) -> G1 {
        let repr = scalar.to_repr();
        let mut acc = G1::identity();
        for (window, &byte) in self.windows.iter().zip(repr.as_ref()) {
            if byte != 0 {
                acc += window[byte as usize];
            }
        }
        acc
    }

    /// `scalars[i] · P` for every i, in affine form.
    fn mul_all(&self, scalars: &[Fr]) -> Vec<G1Affine> {
        let mut out = vec![G1Affine::identity(); scalars.len()];
        parallelize(&mut out, |chunk, start| {
            let projective: Vec<G1> = scalars[start..start + chunk.len()].iter().map(|s| self.mul(s)).collect();
            G1::batch_normalize(&projective, chunk);
        });
        out
    }
}

/// Draws τ from `rng` exactly as `ParamsKZG::setup` does and builds the same parameters, faster.
pub fn fast_setup(k: u32, mut rng: impl RngCore) -> ParamsKZG<Bn256> {
    assert!(k <= Fr::S, "k = {k} is above the field's two-adicity");
    let n = 1usize << k;
    let tau = Fr::random(&mut rng);
    let table = FixedBaseTable::new(G1Affine::generator());

    let mut scalars = vec![Fr::ZERO; n];
    parallelize(&mut scalars, |chunk, start| {
        let mut power = tau.pow_vartime([start as u64]);
        for x in chunk.iter_mut() {
            *x = power;
            power *= tau;
        }
    });
    let g = table.mul_all(&scalars);

    // L_i(τ) = ω^i (τ^n - 1) / (n (τ - ω^i)).
    let mut root = Fr::ROOT_OF_UNITY_INV.invert().expect("a root of unity is invertible");
    for _ in k..Fr::S {
        root = root.square();
    }
    let n_inv = Fr::from(n as u64).invert().expect("n is invertible");
    let multiplier = (tau.pow_vartime([n as u64]) - Fr::ONE) * n_inv;
    parallelize(&mut scalars, |chunk, start| {
        let mut root_pow = root.pow_vartime([start as u64]);
        for x in chunk.iter_mut() {
            *x = tau - root_pow;
            root_pow *= root;
        }
    });
    parallelize(&mut scalars, |chunk, _| {
        chunk.iter_mut().batch_invert();
    });
    parallelize(&mut scalars, |chunk, start| {
        let mut root_pow = root.pow_vartime([start as u64]);
        for x in chunk.iter_mut() {
            *x *= multiplier * root_pow;
            root_pow *= root;
        }
    });
    let g_lagrange = table.mul_all(&scalars);
    drop(scalars);

    let g2 = G2Affine::generator();
    let s_g2 = (g2 * tau).to_affine();
    // `from_parts` is a method; a one-point SRS serves as its receiver.
    let receiver = ParamsKZG::<Bn256>::setup(0, rand_chacha::ChaCha20Rng::from_seed([0; 32]));
    receiver.from_parts(k, g, Some(g_lagrange), g2, s_g2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2_base::halo2_proofs::SerdeFormat;

    fn bytes(params: &ParamsKZG<Bn256>) -> Vec<u8> {
        let mut out = Vec::new();
        params.write_custom(&mut out, SerdeFormat::RawBytes).unwrap();
        out
    }

    #[test]
    fn equals_the_reference_setup_with_the_same_tau() {
        for k in [1u32, 4, 7] {
            let fast = fast_setup(k, rand_chacha::ChaCha20Rng::seed_from_u64(42 + k as u64));
            let reference = ParamsKZG::<Bn256>::setup(k, rand_chacha::ChaCha20Rng::seed_from_u64(42 + k as u64));
            assert_eq!(bytes(&fast), bytes(&reference), "k = {k}");
        }
    }

    #[test]
    fn another_tau_gives_another_srs() {
        let a = fast_setup(3, rand_chacha::ChaCha20Rng::seed_from_u64(1));
        let b = fast_setup(3, rand_chacha::ChaCha20Rng::seed_from_u64(2));
        assert_ne!(bytes(&a), bytes(&b));
    }
}
