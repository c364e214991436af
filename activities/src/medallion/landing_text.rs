//! A landing file's text as its ranges arrive: bronze takes whole rows from the front
//! while the rest is still being read, and holds about a piece and a range of the file
//! instead of all of it.

use flowforge_orchestrator::history::FailureDetails;

use super::frames::row_end_reaching;

/// The text of a file read so far, from a source of its ranges in order (the end of the
/// source is the end of the file; an error item is a failed read).
pub struct LandingText<I> {
    ranges: I,
    text: Vec<u8>,
    /// Where the text not yet taken starts.
    start: usize,
    ended: bool,
}

impl<I: Iterator<Item = Result<Vec<u8>, FailureDetails>>> LandingText<I> {
    /// Text read from `ranges`.
    pub fn new(ranges: I) -> Self {
        Self {
            ranges,
            text: Vec::new(),
            start: 0,
            ended: false,
        }
    }

    /// The text not yet taken.
    pub fn rest(&self) -> &[u8] {
        &self.text[self.start..]
    }

    /// Whether the whole file has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads ranges until at least `bytes` are not yet taken, or the file ends.
    pub fn read_at_least(&mut self, bytes: usize) -> Result<(), FailureDetails> {
        while !self.ended && self.rest().len() < bytes {
            match self.ranges.next() {
                Some(range) => {
                    let range = range?;
                    // What was taken is dropped before the text grows.
                    self.text.drain(..self.start);
                    self.start = 0;
                    self.text.extend_from_slice(&range);
                }
                None => self.ended = true,
            }
        }
        Ok(())
    }

    /// Reads until the text not yet taken holds something besides whitespace, or the file
    /// ends; whether it does.
    pub fn read_past_whitespace(&mut self) -> Result<bool, FailureDetails> {
        loop {
            if !self.rest().iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
            if self.ended {
                return Ok(false);
            }
            let more = self.rest().len() + 1;
            self.read_at_least(more)?;
        }
    }

    /// The next whole rows reaching at least `target` bytes (a row is never cut, a newline
    /// inside quotes is not a row end), all that is left at the end of the file, or `None`
    /// when everything was taken. Hand the length to [`take`](Self::take) once used.
    pub fn next_rows(&mut self, target: usize) -> Result<Option<usize>, FailureDetails> {
        let mut wanted = target;
        loop {
            self.read_at_least(wanted)?;
            let rest = self.rest();
            if rest.is_empty() {
                return Ok(None);
            }
            match row_end_reaching(rest, target) {
                Some(end) => return Ok(Some(end)),
                None if self.ended => return Ok(Some(rest.len())),
                // The row reaching the target has not fully arrived.
                None => wanted = rest.len() + 1,
            }
        }
    }

    /// Marks the first `length` bytes of the rest as taken.
    pub fn take(&mut self, length: usize) {
        self.start = (self.start + length).min(self.text.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(
        text: &[u8],
        size: usize,
    ) -> impl Iterator<Item = Result<Vec<u8>, FailureDetails>> + '_ {
        text.chunks(size).map(|c| Ok(c.to_vec()))
    }

    /// Every piece the text gives, at `target` bytes a piece, read `size` bytes at a time.
    fn pieces(text: &[u8], size: usize, target: usize) -> Vec<Vec<u8>> {
        let mut landing = LandingText::new(ranges(text, size));
        let mut out = Vec::new();
        while let Some(length) = landing.next_rows(target).unwrap() {
            out.push(landing.rest()[..length].to_vec());
            landing.take(length);
        }
        out
    }

    #[test]
    fn pieces_are_whole_rows_whatever_the_ranges() {
        let mut text = b"n,s\n".to_vec();
        for i in 0..300 {
            text.extend(format!("{i},\"row\n{i} says \"\"hi\"\"\"\n").bytes());
        }
        text.extend(b"last,row without newline");
        let whole = pieces(&text, text.len(), 200);
        for size in [1, 2, 3, 7, 64, 199, 200, 201, 4096] {
            let got = pieces(&text, size, 200);
            assert_eq!(got, whole, "ranges of {size} bytes");
        }
        assert_eq!(whole.concat(), text);
        assert!(whole.len() > 10);
        // Each piece but the last ends a row outside quotes and reaches the target.
        for piece in &whole[..whole.len() - 1] {
            assert!(piece.len() >= 200 && piece.ends_with(b"\n"));
        }
    }

    #[test]
    fn whitespace_is_read_past_to_the_first_text_or_the_end() {
        let mut landing = LandingText::new(ranges(b"  \n\n  \nx", 2));
        assert!(landing.read_past_whitespace().unwrap());
        assert_eq!(landing.rest(), b"  \n\n  \nx");
        let mut blank = LandingText::new(ranges(b" \n \n", 1));
        assert!(!blank.read_past_whitespace().unwrap());
        assert!(blank.ended());
    }

    #[test]
    fn a_failed_range_is_the_reads_error() {
        let failing = vec![
            Ok(b"a,b\n1,2\n".to_vec()),
            Err(FailureDetails::non_retryable("StorageError", "range 2")),
        ];
        let mut landing = LandingText::new(failing.into_iter());
        let error = landing.next_rows(100).unwrap_err();
        assert_eq!(error.message, "range 2");
    }

    #[test]
    fn an_empty_file_has_no_rows() {
        let mut landing = LandingText::new(std::iter::empty());
        assert_eq!(landing.next_rows(10).unwrap(), None);
        assert!(landing.ended());
    }
}
