//! H.264 Annex B byte streams (NAL units behind `00 00 01` or `00 00 00 01` start codes):
//! the one scanner `media` (its encoder's output) and `net` (a viewer's keyframe check)
//! both use. It knows neither pixels nor networks.

/// The NAL unit type of an IDR slice: a unit holding one starts a keyframe.
pub const IDR: u8 = 5;
/// The NAL unit types of a sequence and a picture parameter set: a decoder needs both
/// before the first IDR slice.
pub const SPS: u8 = 7;
pub const PPS: u8 = 8;

/// Splits an Annex B byte stream into NAL units (without start codes).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        // Skip a start code (00 00 01 or 00 00 00 01).
        let start = find_start_code(rest)?;
        rest = &rest[start..];
        let end = find_start_code_pos(rest).unwrap_or(rest.len());
        let nal = &rest[..end];
        rest = &rest[end..];
        Some(trim_trailing_zeros(nal))
    })
}

/// The type (low 5 bits of the header byte) of each non-empty NAL unit in `data`.
pub fn nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    nal_units(data).filter_map(|nal| nal.first().map(|header| header & 0x1f))
}

fn find_start_code_pos(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1]).map(|p| {
        if p > 0 && data[p - 1] == 0 {
            p - 1
        } else {
            p
        }
    })
}

fn find_start_code(data: &[u8]) -> Option<usize> {
    let p = data.windows(3).position(|w| w == [0, 0, 1])?;
    Some(p + 3)
}

fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let mut end = nal.len();
    while end > 0 && nal[end - 1] == 0 {
        end -= 1;
    }
    &nal[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_splitting_handles_both_start_code_lengths() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert_eq!(nal_types(&data).collect::<Vec<_>>(), vec![7, 8, IDR]);
    }

    #[test]
    fn empty_and_truncated_units_have_no_type() {
        // Start codes back to back, and one at the very end: nothing to read a type from.
        let data = [0, 0, 1, 0, 0, 1, 0x65, 9, 0, 0, 0, 1];
        assert_eq!(nal_types(&data).collect::<Vec<_>>(), vec![IDR]);
        assert_eq!(nal_types(&[]).count(), 0);
        assert_eq!(nal_types(&[0x65, 0, 0]).count(), 0, "no start code");
    }
}
