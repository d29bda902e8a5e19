// Internal: what the error-feedback quantizer (feedback.cc) needs to know of a
// block format, one FeedbackCodec per format (feedback_codecs.cc).
//
// Once a block's scales are fixed, element j (group g = j / group_size)
// decodes to scale[g] * level(q) - offset[g] for one code q in qmin..qmax,
// level(q) = q, or levels[q - qmin] for a codebook. That is all the quantizer
// needs to round one column at a time and to know the value it wrote.
#ifndef MIXQ_FORMATS_FEEDBACK_H_
#define MIXQ_FORMATS_FEEDBACK_H_

#include <cstdint>

namespace mixq::formats {

struct Format;

struct FeedbackCodec {
  int group_size;
  int qmin;
  int qmax;
  const int8_t* levels;  // nullptr: level(q) = q
  // Every group's scale and offset of an encoded block, as its decoder
  // computes them (offset 0 for the symmetric types).
  void (*read_grid)(const uint8_t* block, float* scale, float* offset);
  // Replaces the block's quants with codes[block_elems] (qmin..qmax), keeping its scales.
  void (*store_codes)(const int* codes, uint8_t* block);
};

namespace internal {

// Encodes n_rows rows of n values with error feedback through the factor u
// (FeedbackFactor): the work of QuantizeRowsFeedback for one range of rows.
void QuantizeRowsWithFeedback(const Format& format, const float* src, uint8_t* dst, int64_t n_rows, int64_t n,
                              int64_t row_bytes, const float* importance, const float* u);

extern const FeedbackCodec kFeedbackQ4_0;
extern const FeedbackCodec kFeedbackQ8_0;
extern const FeedbackCodec kFeedbackQ2K;
extern const FeedbackCodec kFeedbackQ3K;
extern const FeedbackCodec kFeedbackQ4K;
extern const FeedbackCodec kFeedbackQ5K;
extern const FeedbackCodec kFeedbackQ6K;
extern const FeedbackCodec kFeedbackIQ4XS;

}  // namespace internal
}  // namespace mixq::formats

#endif  // MIXQ_FORMATS_FEEDBACK_H_
