/// Causal scaled-dot-product attention with grouped-query heads, on BLAS.
///
/// Layouts (row-major, row strides given so heads can live inside wider rows):
/// - `q`   `[T, heads * headDim]`: the T query rows, at absolute positions `start ..< start + T`;
/// - `k`,`v` `[S, kvHeads * headDim]`: keys/values of positions `0 ..< S` (S >= start + T);
/// - `out` `[T, heads * headDim]`.
/// Query head `h` reads kv head `h / (heads / kvHeads)`.
/// `scores` is caller-owned scratch of at least `T * S` floats (no allocation here).
///
/// Per head: `scores = scale * Q_h K_h^T` (one `cblas_sgemm`, or `cblas_sgemv` for T == 1),
/// causal softmax, `out_h = P V_h`.
public enum Attention {
    public static func causal(
        q: UnsafePointer<Float>, ldq: Int,
        k: UnsafePointer<Float>, ldk: Int,
        v: UnsafePointer<Float>, ldv: Int,
        out: UnsafeMutablePointer<Float>, ldo: Int,
        tokens t: Int, start: Int, keys s: Int,
        heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
        scores: UnsafeMutablePointer<Float>, softcap: Float = 0, window: Int = 0
    ) {
        precondition(heads % kvHeads == 0, "attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        precondition(s >= start + t, "attention: \(s) keys for queries up to position \(start + t - 1)")
        let group = heads / kvHeads
        for h in 0..<heads {
            let kvh = h / group
            let qh = q + h * d, kh = k + kvh * d, vh = v + kvh * d, oh = out + h * d
            if t == 1 {
                BLAS.sgemv(m: s, n: d, alpha: scale, a: kh, lda: ldk, x: qh, y: scores)
                Ops.capAndWindow(scores, rows: 1, n: s, causalOffset: start, softcap: softcap, window: window)
                Ops.softmax(scores, rows: 1, n: s, causalOffset: start)
                BLAS.sgemv(trans: true, m: s, n: d, a: vh, lda: ldv, x: scores, y: oh)
            } else {
                BLAS.sgemm(transB: true, m: t, n: s, k: d, alpha: scale, a: qh, lda: ldq, b: kh, ldb: ldk, c: scores, ldc: s)
                Ops.capAndWindow(scores, rows: t, n: s, causalOffset: start, softcap: softcap, window: window)
                Ops.softmax(scores, rows: t, n: s, causalOffset: start)
                BLAS.sgemm(m: t, n: d, k: s, a: scores, lda: s, b: vh, ldb: ldv, c: oh, ldc: ldo)
            }
        }
    }
}
