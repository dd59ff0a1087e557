/* ebnn runtime: the block API of ebnn.h over the kernels of ebnn_kernels.h. The generated model.c calls
 * the kernels directly, so that each is specialized to its layer; these wrappers serve other callers. */
#define EBNN_GENERIC /* nothing is a constant here: no forced inlining or unrolling, which would only bloat */
#include "ebnn_kernels.h"

uint32_t ebnn_conv_scratch_words(const ebnn_conv_params *p)
{
    return ebnn_conv_scratch_words_k(p);
}

void ebnn_pack_binary_input(const uint8_t *pixels, ebnn_dims d, uint8_t threshold, uint32_t *out)
{
    ebnn_pack_binary_input_k(pixels, d, threshold, out);
}

ebnn_status ebnn_conv_block(const ebnn_conv_params *p, ebnn_input in, uint32_t *out, uint32_t *scratch)
{
    ebnn_work wk;
    return ebnn_conv_block_k(p, in, out, scratch, &wk);
}

ebnn_status ebnn_dense_block(const ebnn_dense_params *p, ebnn_input in, uint32_t *out)
{
    ebnn_work wk;
    return ebnn_dense_block_k(p, in, out, &wk);
}

int ebnn_classifier(const ebnn_classifier_params *p, ebnn_input in, int32_t *scores)
{
    ebnn_work wk;
    return ebnn_classifier_k(p, in, scores, &wk);
}
