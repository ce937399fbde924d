use proptest::prelude::*;

use super::*;
use crate::hash::{Hash, root_from_leaves};

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| Hash::leaf(&i.to_be_bytes())).collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out.0[(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

#[test]
fn every_proof_in_small_trees_verifies() {
    let all = leaves(70);
    for size in 1..=70u64 {
        let tree = &all[..size as usize];
        let root = root_from_leaves(tree);
        for index in 0..size {
            let proof = inclusion_proof(&mut MemoryNodes(tree), index, size).unwrap();
            verify_inclusion(index, size, &tree[index as usize], &proof, &root).unwrap();
        }
        for old in 1..size {
            let old_root = root_from_leaves(&tree[..old as usize]);
            let proof = consistency_proof(&mut MemoryNodes(tree), old, size).unwrap();
            verify_consistency(old, size, &proof, &old_root, &root).unwrap();
        }
    }
}

#[test]
fn memory_tree_agrees_with_recomputation() {
    let all = leaves(300);
    let mut tree = MemoryTree::new(all.clone());
    for size in [1u64, 2, 3, 255, 256, 257, 300] {
        assert_eq!(tree.root_at(size).unwrap(), root_from_leaves(&all[..size as usize]));
        for index in [0, size / 2, size - 1] {
            assert_eq!(
                inclusion_proof(&mut tree, index, size).unwrap(),
                inclusion_proof(&mut MemoryNodes(&all), index, size).unwrap()
            );
        }
    }
    assert!(tree.root_at(301).is_err());
}

#[test]
fn generation_rejects_out_of_range() {
    let tree = leaves(4);
    assert!(inclusion_proof(&mut MemoryNodes(&tree), 4, 4).is_err());
    assert!(consistency_proof(&mut MemoryNodes(&tree), 0, 4).is_err());
    assert!(consistency_proof(&mut MemoryNodes(&tree), 4, 4).is_err());
    assert!(consistency_proof(&mut MemoryNodes(&tree), 5, 4).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_proofs_verify_and_any_bit_flip_fails(size in 1u64..600, pick in any::<u64>(), bit in 0usize..256, which in 0usize..4) {
        let tree = leaves(size);
        let index = pick % size;
        let root = root_from_leaves(&tree);
        let proof = inclusion_proof(&mut MemoryNodes(&tree), index, size).unwrap();
        let leaf = tree[index as usize];
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());

        match which {
            0 if !proof.is_empty() => {
                let mut bad = proof.clone();
                let i = bit % bad.len();
                bad[i] = flip(&bad[i], bit);
                prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
            }
            1 => prop_assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &root).is_err()),
            2 => prop_assert!(verify_inclusion(index, size, &leaf, &proof, &flip(&root, bit)).is_err()),
            _ => {
                // Against another signed tree head (a flipped size with that tree's real
                // root) the proof verifies only if it is also that tree's real proof.
                let other = size ^ (1 << (bit % 10));
                if other != 0 && other != size && index < other {
                    let other_tree = leaves(other);
                    let other_root = root_from_leaves(&other_tree);
                    let verifies = verify_inclusion(index, other, &leaf, &proof, &other_root).is_ok();
                    let real = inclusion_proof(&mut MemoryNodes(&other_tree), index, other).unwrap();
                    prop_assert_eq!(verifies, real == proof);
                }
                // The same leaf and proof claimed at another position must not verify.
                let other_index = index ^ (1 << (bit % 10));
                if other_index != index && other_index < size {
                    prop_assert!(verify_inclusion(other_index, size, &leaf, &proof, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_bit_flip_fails(new in 2u64..600, pick in any::<u64>(), bit in 0usize..256, which in 0usize..4) {
        let tree = leaves(new);
        let old = 1 + pick % (new - 1);
        let old_root = root_from_leaves(&tree[..old as usize]);
        let new_root = root_from_leaves(&tree);
        let proof = consistency_proof(&mut MemoryNodes(&tree), old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &proof, &old_root, &new_root).is_ok());

        match which {
            0 => {
                let mut bad = proof.clone();
                let i = bit % bad.len();
                bad[i] = flip(&bad[i], bit);
                prop_assert!(verify_consistency(old, new, &bad, &old_root, &new_root).is_err());
            }
            1 => prop_assert!(verify_consistency(old, new, &proof, &flip(&old_root, bit), &new_root).is_err()),
            2 => prop_assert!(verify_consistency(old, new, &proof, &old_root, &flip(&new_root, bit)).is_err()),
            _ => {
                let other = new ^ (1 << (bit % 10));
                if other > old && other != new {
                    let other_tree = leaves(other);
                    let other_root = root_from_leaves(&other_tree);
                    let verifies = verify_consistency(old, other, &proof, &old_root, &other_root).is_ok();
                    let real = consistency_proof(&mut MemoryNodes(&other_tree), old, other).unwrap();
                    prop_assert_eq!(verifies, real == proof);
                }
                let other_old = old ^ (1 << (bit % 10));
                if other_old != old && other_old > 0 && other_old < new {
                    let other_old_root = root_from_leaves(&tree[..other_old as usize]);
                    let verifies = verify_consistency(other_old, new, &proof, &other_old_root, &new_root).is_ok();
                    let real = consistency_proof(&mut MemoryNodes(&tree), other_old, new).unwrap();
                    prop_assert_eq!(verifies, real == proof);
                }
            }
        }
    }
}
