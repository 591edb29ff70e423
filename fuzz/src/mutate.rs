//! Mutations of an input: the usual byte-level ones, plus varints with
//! interesting values (postcard encodes every length and integer as a
//! LEB128 varint, so a planted varint reaches length checks and bounds).

use fastrand::Rng;

/// Largest input a mutation may produce.
const MAX_LEN: usize = 1 << 16;

/// Values at the edges of the checks a decoder makes.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0xffff,
    1 << 20,
    u32::MAX as u64,
    (1 << 62) + 1,
    u64::MAX - 1,
    u64::MAX,
];

fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Applies one to four random mutations to `input`, splicing from `other`
/// (another corpus entry) for some of them.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..rng.usize(1..5) {
        let len = data.len();
        let at = rng.usize(0..=len);
        match rng.u8(0..9) {
            0 if len > 0 => {
                let i = rng.usize(0..len);
                data[i] ^= 1 << rng.u8(0..8);
            }
            1 if len > 0 => {
                let i = rng.usize(0..len);
                data[i] = rng.u8(..);
            }
            2 => {
                let n = rng.usize(1..9);
                let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let end = (at + rng.usize(1..9)).min(len);
                data.drain(at.min(end)..end);
            }
            4 => {
                let mut bytes = Vec::new();
                varint(INTERESTING[rng.usize(..INTERESTING.len())], &mut bytes);
                // Replace what is there (about a varint's worth) or insert.
                if rng.bool() && at < len {
                    let end = (at + bytes.len()).min(len);
                    data.splice(at..end, bytes);
                } else {
                    data.splice(at..at, bytes);
                }
            }
            5 if len > 0 => data.truncate(rng.usize(0..len)),
            6 if !other.is_empty() => {
                let from = rng.usize(0..other.len());
                let end = (from + rng.usize(1..64)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            7 if len > 1 => {
                // Repeat a span: lists that go on, duplicated entries.
                let from = rng.usize(0..len);
                let end = (from + rng.usize(1..32)).min(len);
                let span = data[from..end].to_vec();
                data.splice(at..at, span);
            }
            _ if len > 0 => {
                let i = rng.usize(0..len);
                data[i] = data[i].wrapping_add(rng.u8(1..4)).wrapping_sub(2);
            }
            _ => data.push(rng.u8(..)),
        }
        data.truncate(MAX_LEN);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_leb128() {
        let mut out = Vec::new();
        varint(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
    }

    #[test]
    fn mutations_change_inputs_and_stay_bounded() {
        let mut rng = Rng::with_seed(7);
        let input = vec![1u8; 40];
        let changed = (0..200)
            .filter(|_| mutate(&input, &[9; 10], &mut rng) != input)
            .count();
        assert!(changed > 150, "{changed} of 200 changed");
        let big = vec![0u8; MAX_LEN];
        assert!(mutate(&big, &big, &mut rng).len() <= MAX_LEN);
    }
}
