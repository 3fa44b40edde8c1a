//! A small deterministic mutator for the smoke run: it turns seed inputs
//! into a few thousand variants (bit flips, interesting bytes, dictionary
//! tokens, deletions, duplications, splices, truncations) with a seeded
//! PRNG, so the same inputs are tried on every run and a failure names the
//! case that reproduces it. libFuzzer's coverage-guided search, in the long
//! runs, goes much further; this only keeps each target exercised in CI.

/// SplitMix64: tiny, fast, and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Bytes that tend to matter to parsers.
const INTERESTING: &[u8] = b"\0\n\r\t \"'\\[]{}=#$.,:;/@%&<>?!-+0~\x7f\xff\xc3\xe2";

/// Apply one to four random mutations to `input`, drawing tokens from
/// `dict` and splice material from `seeds`.
pub fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>], dict: &[&str]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if !dict.is_empty() => {
                let t = dict[rng.below(dict.len())].as_bytes();
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                v.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            6 if len > 0 => v.truncate(rng.below(len)),
            _ => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                v.splice(at..at, bytes);
            }
        }
    }
    v
}

/// Run `target` on every seed, then on `generated` mutations of them (each
/// mutation starts from a random seed). Returns how many inputs ran. A
/// panic in the target fails the caller with the input, hex-encoded.
pub fn smoke(
    target: fn(&[u8]),
    seeds: &[Vec<u8>],
    dict: &[&str],
    generated: usize,
    seed: u64,
) -> usize {
    let mut rng = Rng::new(seed);
    let mut ran = 0;
    let run = |input: &[u8]| {
        let r = std::panic::catch_unwind(|| target(input));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "fuzz target failed ({msg}) on input {:?} (hex {})",
                String::from_utf8_lossy(input),
                input.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
    };
    for s in seeds {
        run(s);
        ran += 1;
    }
    let empty = vec![Vec::new()];
    let pool = if seeds.is_empty() { &empty } else { seeds };
    for _ in 0..generated {
        let start = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, start, pool, dict);
        run(&input);
        ran += 1;
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_varied() {
        let seeds = vec![b"[bridge]\nconcurrency_cap = 4\n".to_vec()];
        let run = |seed| {
            let mut r = Rng::new(seed);
            (0..50)
                .map(|_| mutate(&mut r, &seeds[0], &seeds, &["[[backends]]"]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let distinct: std::collections::HashSet<_> = run(7).into_iter().collect();
        assert!(distinct.len() > 40, "{}", distinct.len());
    }
}
