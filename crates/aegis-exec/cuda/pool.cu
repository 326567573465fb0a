// AegisRT CUDA kernels: MaxPool / AveragePool over 1-3 spatial axes (f32, NC + spatial), as
// crates/aegis-exec/src/kernels/pool.rs: pads, strides, dilations, ceil_mode (already in the
// output shape), count_include_pad (cells of the padded extent count, cells beyond it never).
//
// meta = [planes, in[3], out[3], k[3], s[3], d[3], pad_begin[3], pad_end[3]] with missing
// leading spatial axes given extent 1, kernel 1, stride 1, dilation 1, pads 0.

__device__ __forceinline__ long long gtid() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long gstride() {
    return (long long)gridDim.x * blockDim.x;
}

// kind: 0 max, 1 average.
extern "C" __global__ void pool_f32(const float* __restrict__ x, float* __restrict__ y,
                                    const long long* __restrict__ meta, int kind,
                                    int count_include_pad) {
    long long planes = meta[0];
    const long long* in = meta + 1;
    const long long* out = meta + 4;
    const long long* k = meta + 7;
    const long long* s = meta + 10;
    const long long* dl = meta + 13;
    const long long* pb = meta + 16;
    const long long* pe = meta + 19;
    long long op = out[0] * out[1] * out[2];
    long long ip = in[0] * in[1] * in[2];
    long long n = planes * op;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long plane = i / op;
        long long r = i - plane * op;
        long long ow = r % out[2];
        long long oh = (r / out[2]) % out[1];
        long long od = r / (out[2] * out[1]);
        const float* xp = x + plane * ip;
        long long sd = od * s[0] - pb[0], sh = oh * s[1] - pb[1], sw = ow * s[2] - pb[2];
        float acc = kind == 0 ? __int_as_float(0xff800000) : 0.0f;
        long long count = 0, pd = 0, ph = 0, pw = 0;
        for (long long kd = 0; kd < k[0]; ++kd) {
            long long id = sd + kd * dl[0];
            if (id >= -pb[0] && id < in[0] + pe[0]) ++pd;
            if (id < 0 || id >= in[0]) continue;
            for (long long kh = 0; kh < k[1]; ++kh) {
                long long ih = sh + kh * dl[1];
                if (ih < 0 || ih >= in[1]) continue;
                const float* row = xp + (id * in[1] + ih) * in[2];
                for (long long kw = 0; kw < k[2]; ++kw) {
                    long long iw = sw + kw * dl[2];
                    if (iw < 0 || iw >= in[2]) continue;
                    float v = row[iw];
                    if (kind == 0) {
                        if (v > acc || isnan(v)) acc = v;
                    } else {
                        acc += v;
                    }
                    ++count;
                }
            }
        }
        if (kind == 0) {
            y[i] = acc;
        } else {
            long long div = count;
            if (count_include_pad) {
                for (long long kh = 0; kh < k[1]; ++kh) {
                    long long ih = sh + kh * dl[1];
                    if (ih >= -pb[1] && ih < in[1] + pe[1]) ++ph;
                }
                for (long long kw = 0; kw < k[2]; ++kw) {
                    long long iw = sw + kw * dl[2];
                    if (iw >= -pb[2] && iw < in[2] + pe[2]) ++pw;
                }
                div = pd * ph * pw;
            }
            y[i] = div == 0 ? 0.0f : acc / (float)div;
        }
    }
}
