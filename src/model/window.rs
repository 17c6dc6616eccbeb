//! The sliding window of convolutions and pooling (any number of spatial axes): which input
//! elements each output element reads. Shared by the integer reference and the circuit, so both
//! sum exactly the same terms.

use serde::{Deserialize, Serialize};

/// A window sliding over the spatial axes of an `[N, C, spatial...]` tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Input spatial dimensions.
    pub input: Vec<usize>,
    /// Kernel spatial dimensions.
    pub kernel: Vec<usize>,
    /// Step between windows, per axis.
    pub strides: Vec<usize>,
    /// Padding before the first element, per axis (the padding after is implied by `output`).
    pub pads_begin: Vec<usize>,
    /// Spacing of the kernel's taps, per axis.
    pub dilations: Vec<usize>,
    /// Output spatial dimensions.
    pub output: Vec<usize>,
}

impl Window {
    /// The window over `input` with the given geometry; `Err` names what does not fit.
    pub fn new(
        input: &[usize],
        kernel: &[usize],
        strides: &[usize],
        pads_begin: &[usize],
        pads_end: &[usize],
        dilations: &[usize],
    ) -> Result<Self, String> {
        let d = input.len();
        if [kernel.len(), strides.len(), pads_begin.len(), pads_end.len(), dilations.len()].iter().any(|&n| n != d) {
            return Err(format!("a window over {d} spatial axes needs {d} kernel sizes, strides, pads and dilations"));
        }
        if strides.contains(&0) || dilations.contains(&0) || kernel.contains(&0) {
            return Err("kernel sizes, strides and dilations must be positive".into());
        }
        let mut output = Vec::with_capacity(d);
        for a in 0..d {
            let span = dilations[a] * (kernel[a] - 1) + 1;
            let padded = input[a] + pads_begin[a] + pads_end[a];
            if padded < span {
                return Err(format!("axis {a}: the kernel spans {span} elements but the padded input has {padded}"));
            }
            output.push((padded - span) / strides[a] + 1);
        }
        Ok(Window {
            input: input.to_vec(),
            kernel: kernel.to_vec(),
            strides: strides.to_vec(),
            pads_begin: pads_begin.to_vec(),
            dilations: dilations.to_vec(),
            output,
        })
    }

    /// Elements of one input channel.
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Elements of one output channel.
    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Taps of the kernel.
    pub fn kernel_len(&self) -> usize {
        self.kernel.iter().product()
    }

    /// The first output position (flat, within a channel) whose window lies entirely in the
    /// padding: it reads no input element, so neither a maximum nor an average of its taps exists.
    pub fn first_empty_output(&self) -> Option<usize> {
        (0..self.output_len()).find(|&o| self.taps(o).is_empty())
    }

    /// The taps of output position `o` (flat, within a channel) that fall inside the input, as
    /// (kernel tap, input position), both flat; taps on the padding are left out.
    pub fn taps(&self, o: usize) -> Vec<(usize, usize)> {
        let d = self.input.len();
        // Output coordinates, outermost axis first.
        let mut coords = vec![0; d];
        let mut rest = o;
        for a in (0..d).rev() {
            coords[a] = rest % self.output[a];
            rest /= self.output[a];
        }
        let mut taps = Vec::with_capacity(self.kernel_len());
        for tap in 0..self.kernel_len() {
            let mut t = tap;
            let mut offsets = vec![0; d];
            for a in (0..d).rev() {
                offsets[a] = t % self.kernel[a];
                t /= self.kernel[a];
            }
            let mut position = 0;
            let mut inside = true;
            for a in 0..d {
                let i = (coords[a] * self.strides[a] + offsets[a] * self.dilations[a]) as isize
                    - self.pads_begin[a] as isize;
                if i < 0 || i as usize >= self.input[a] {
                    inside = false;
                    break;
                }
                position = position * self.input[a] + i as usize;
            }
            if inside {
                taps.push((tap, position));
            }
        }
        taps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_follows_onnx() {
        // 28 → 24 with a 5-wide kernel; 24 → 12 with a 2-wide pool of stride 2.
        assert_eq!(Window::new(&[28, 28], &[5, 5], &[1, 1], &[0, 0], &[0, 0], &[1, 1]).unwrap().output, vec![24, 24]);
        assert_eq!(Window::new(&[24, 24], &[2, 2], &[2, 2], &[0, 0], &[0, 0], &[1, 1]).unwrap().output, vec![12, 12]);
        // Padding 1, stride 2, dilation 2 on 7: (7 + 2 - 5) / 2 + 1 = 3.
        assert_eq!(Window::new(&[7], &[3], &[2], &[1], &[1], &[2]).unwrap().output, vec![3]);
        assert!(Window::new(&[2], &[3], &[1], &[0], &[0], &[1]).is_err());
    }

    #[test]
    fn taps_skip_the_padding() {
        let w = Window::new(&[3, 3], &[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1]).unwrap();
        assert_eq!(w.output, vec![3, 3]);
        // The corner output sees the 2×2 corner of the input, through the kernel's last taps.
        assert_eq!(w.taps(0), vec![(4, 0), (5, 1), (7, 3), (8, 4)]);
        // The centre sees everything.
        assert_eq!(w.taps(4).len(), 9);
        // Dilation 2 on 5 elements, kernel 2: output 0 reads inputs 0 and 2.
        let d = Window::new(&[5], &[2], &[1], &[0], &[0], &[2]).unwrap();
        assert_eq!(d.taps(0), vec![(0, 0), (1, 2)]);
        assert_eq!(d.output, vec![3]);
    }

    #[test]
    fn a_window_over_padding_only_is_found() {
        // Kernel 1 with one pad on each side of 4 elements: outputs 0 and 5 read only padding.
        let w = Window::new(&[4], &[1], &[1], &[1], &[1], &[1]).unwrap();
        assert_eq!(w.output, vec![6]);
        assert_eq!(w.first_empty_output(), Some(0));
        let full = Window::new(&[4], &[3], &[1], &[1], &[1], &[1]).unwrap();
        assert_eq!(full.first_empty_output(), None);
    }
}
