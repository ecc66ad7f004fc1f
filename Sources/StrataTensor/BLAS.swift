import COpenBLAS
import Foundation

/// The BLAS wrapper: Strata's only door to OpenBLAS (and LAPACKE).
///
/// Convention (the Hugging Face layout): a linear layer computes
/// `y = x * W^T (+ b)` with `x` `[M, K]` row-major, `W` stored `[N, K]`
/// (out features, in features) row-major, `y` `[M, N]`. It runs on
/// `cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, ...)`, and
/// for a single row (`M == 1`) on `cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, ...)`:
/// OpenBLAS's sgemm with M = 1 reads the weights far slower than sgemv, and a decode step is a
/// weight-bandwidth-bound single row per sequence. (16-bit weights with one row go to Strata's
/// `GEMV`, which widens them in registers; for f32, OpenBLAS's sgemv measured faster here.)
///
/// All entry points take raw pointers with explicit leading dimensions, so a
/// caller can address a head or a block inside a larger buffer without copying.
public enum BLAS {
    /// `C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C`, row-major, on `cblas_sgemm`.
    /// `lda`, `ldb`, `ldc` are the row strides (in elements) of A, B, C as stored.
    @inlinable
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size m=\(m) n=\(n) k=\(k)")
        precondition(lda >= max(1, transA ? m : k), "sgemm: lda \(lda) too small")
        precondition(ldb >= max(1, transB ? k : n), "sgemm: ldb \(ldb) too small")
        precondition(ldc >= max(1, n), "sgemm: ldc \(ldc) too small")
        if m == 0 || n == 0 { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// `y[rows(op(A))] = alpha * op(A) * x + beta * y`, with A `[m, n]` row-major, on `cblas_sgemv`.
    @inlinable
    public static func sgemv(
        trans: Bool = false, m: Int, n: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, incx: Int = 1,
        beta: Float = 0,
        y: UnsafeMutablePointer<Float>, incy: Int = 1
    ) {
        precondition(m >= 0 && n >= 0 && lda >= max(1, n), "sgemv: m=\(m) n=\(n) lda=\(lda)")
        if m == 0 || n == 0 { return }
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), alpha, a, blasint(lda),
                    x, blasint(incx), beta, y, blasint(incy))
    }

    /// A strided batch of sgemms: for `i in 0..<batch`, C_i = alpha op(A_i) op(B_i) + beta C_i,
    /// where X_i = X + i * strideX (strides in elements; a stride of 0 broadcasts).
    public static func sgemmStridedBatched(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, strideA: Int,
        b: UnsafePointer<Float>, ldb: Int, strideB: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int,
        batch: Int
    ) {
        for i in 0..<batch {
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                  a: a + i * strideA, lda: lda, b: b + i * strideB, ldb: ldb,
                  beta: beta, c: c + i * strideC, ldc: ldc)
        }
    }

    /// Linear layer `y[M,N] = x[M,K] * W[N,K]^T (+ bias[N])`. `ldx`/`ldy` default to K/N.
    /// M == 1 goes through `cblas_sgemv`, M > 1 through `cblas_sgemm` (see the type's comment).
    public static func linear(
        x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, ldx: Int? = nil,
        weight w: UnsafePointer<Float>, outFeatures n: Int,
        bias: UnsafePointer<Float>? = nil,
        y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
        accumulate: Bool = false
    ) {
        let lx = ldx ?? k, ly = ldy ?? n
        let beta: Float = accumulate ? 1 : 0
        if m <= 3 || (m <= 8 && n * k < (4 << 20)) {
            // one sgemv per row: each streams the weights at memory bandwidth (small matrices,
            // which OpenBLAS's small-M GEMM handles worst, take this path up to 8 rows)
            for r in 0..<m { sgemv(m: n, n: k, a: w, lda: k, x: x + r * lx, beta: beta, y: y + r * ly) }
        } else {
            sgemm(transB: true, m: m, n: n, k: k, a: x, lda: lx, b: w, ldb: k, beta: beta, c: y, ldc: ly)
        }
        if let bias {
            for r in 0..<m {
                let row = y + r * ly
                for j in 0..<n { row[j] += bias[j] }
            }
        }
    }


    /// Sets OpenBLAS's thread count (`openblas_set_num_threads`). Use `Threads.set` instead,
    /// which also sets Strata's own parallel loops.
    static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// OpenBLAS's kernel name for this CPU (`openblas_get_corename`), e.g. "SkylakeX".
    public static var coreName: String { String(cString: openblas_get_corename()) }
    /// OpenBLAS's build configuration (`openblas_get_config`), including its version.
    public static var config: String { String(cString: openblas_get_config()) }
    /// Threads OpenBLAS will use (`openblas_get_num_threads`).
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Least-squares solve `min ||A x - b||` for A `[m, n]` (m >= n) row-major, on `LAPACKE_dgels`.
    /// Returns x `[n]`, or nil when A is rank-deficient.
    public static func leastSquares(a: [Double], rows m: Int, cols n: Int, b: [Double]) -> [Double]? {
        precondition(a.count == m * n && b.count == m && m >= n, "leastSquares: A \(a.count) for \(m)x\(n), b \(b.count)")
        var a = a, b = b
        let info = a.withUnsafeMutableBufferPointer { ap in
            b.withUnsafeMutableBufferPointer { bp in
                LAPACKE_dgels(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "N")), Int32(m), Int32(n), 1,
                              ap.baseAddress, Int32(n), bp.baseAddress, 1)
            }
        }
        return info == 0 ? Array(b.prefix(n)) : nil
    }
}

