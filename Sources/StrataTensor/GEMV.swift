/// Strata's own matrix-vector product for the single-row linear layer (a decode step).
///
/// `y[j] (+)= sum_k W[j, k] * x[k]` for `j in 0..<n`, W `[n, k]` row-major (the HF layout),
/// in f32 (handed to `cblas_sgemv`), f16 or bf16 storage: 16-bit weights are widened in
/// registers, so a bf16 model reads half the bytes of an f32 one and needs no conversion
/// scratch. Rows are split across `Threads.count` threads; within a thread four rows share each
/// load of `x`. On TinyLlama's shape this loop reached 54% of the bf16 bandwidth bound, which
/// still decodes faster than f32 (docs/benchmarks.md).
public enum GEMV {
    public static func run(weight w: UnsafeRawPointer, dtype: DType, rows n: Int, cols k: Int,
                           x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        if dtype == .f32 {
            // f32 weights: OpenBLAS's sgemv measured faster than a Swift loop here (docs/benchmarks.md)
            BLAS.sgemv(m: n, n: k, a: w.assumingMemoryBound(to: Float.self), lda: k, x: x, beta: accumulate ? 1 : 0, y: y)
            return
        }
        let wb = UncheckedSendable(w), xb = UncheckedSendable(x), yb = UncheckedSendable(y)
        // chunks of >= 64 rows (or ~256 KiB of weights) so threads are worth waking
        let minRows = max(64, (256 << 10) / max(1, k * dtype.byteSize))
        Threads.parallelFor((n + 3) / 4, minChunk: max(1, minRows / 4)) { groups in
            let lo = groups.lowerBound * 4, hi = min(n, groups.upperBound * 4)
            switch dtype {
            case .f32: preconditionFailure("GEMV: f32 goes to sgemv")
            case .bf16: rows16(wb.value.assumingMemoryBound(to: UInt16.self), lo..<hi, k, xb.value, yb.value, accumulate, BF16.self)
            case .f16: rows16(wb.value.assumingMemoryBound(to: UInt16.self), lo..<hi, k, xb.value, yb.value, accumulate, F16.self)
            }
        }
    }

    @inline(__always)
    static func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }

    /// Widens 16-bit weights held in pairs (one 32-bit lane holds elements 2i and 2i+1), so
    /// widening is pure 32-bit lane arithmetic and vectorizes on any x86-64.
    protocol Widener {
        static func even(_ v: SIMD8<UInt32>) -> SIMD8<Float>
        static func odd(_ v: SIMD8<UInt32>) -> SIMD8<Float>
        static func scalar(_ h: UInt16) -> Float
    }

    enum BF16: Widener {
        @inline(__always) static func even(_ v: SIMD8<UInt32>) -> SIMD8<Float> {
            unsafeBitCast(v &<< SIMD8<UInt32>(repeating: 16), to: SIMD8<Float>.self)
        }
        @inline(__always) static func odd(_ v: SIMD8<UInt32>) -> SIMD8<Float> {
            unsafeBitCast(v & SIMD8<UInt32>(repeating: 0xFFFF_0000), to: SIMD8<Float>.self)
        }
        @inline(__always) static func scalar(_ h: UInt16) -> Float { HalfConversion.bf16ToF32(h) }
    }

    enum F16: Widener {
        @inline(__always) static func even(_ v: SIMD8<UInt32>) -> SIMD8<Float> { convert(v & SIMD8<UInt32>(repeating: 0xFFFF)) }
        @inline(__always) static func odd(_ v: SIMD8<UInt32>) -> SIMD8<Float> { convert(v &>> SIMD8<UInt32>(repeating: 16)) }
        @inline(__always) static func scalar(_ h: UInt16) -> Float { HalfConversion.f16ToF32(h) }
        /// f16 bits (low 16 of each lane) -> f32, exact, with zero, subnormals, inf and NaN.
        @inline(__always) static func convert(_ h: SIMD8<UInt32>) -> SIMD8<Float> {
            let sign = (h & SIMD8(repeating: 0x8000)) &<< SIMD8(repeating: 16)
            let exp = (h &>> SIMD8(repeating: 10)) & SIMD8(repeating: 0x1F)
            let mant = h & SIMD8(repeating: 0x3FF)
            var bits = ((exp &+ SIMD8(repeating: 112)) &<< SIMD8(repeating: 23)) | (mant &<< SIMD8(repeating: 13))
            bits.replace(with: SIMD8(repeating: 0x7F80_0000) | (mant &<< SIMD8(repeating: 13)), where: exp .== SIMD8(repeating: 0x1F))
            let sub = SIMD8<Float>(mant) * SIMD8<Float>(repeating: 5.960464477539063e-08)
            bits.replace(with: unsafeBitCast(sub, to: SIMD8<UInt32>.self), where: exp .== SIMD8(repeating: 0))
            return unsafeBitCast(bits | sign, to: SIMD8<Float>.self)
        }
    }

    @inline(__always)
    static func load8u(_ p: UnsafePointer<UInt16>) -> SIMD8<UInt32> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<UInt32>.self)
    }

    static func rows16<W: Widener>(_ w: UnsafePointer<UInt16>, _ rows: Range<Int>, _ k: Int, _ x: UnsafePointer<Float>,
                                   _ y: UnsafeMutablePointer<Float>, _ acc: Bool, _: W.Type) {
        let k16 = k / 16 * 16
        var j = rows.lowerBound
        while j + 4 <= rows.upperBound {
            let r0 = w + j * k, r1 = r0 + k, r2 = r1 + k, r3 = r2 + k
            var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
            var i = 0
            while i < k16 {
                let xv = load16(x + i)
                let xe = xv.evenHalf, xo = xv.oddHalf
                let v0 = load8u(r0 + i), v1 = load8u(r1 + i), v2 = load8u(r2 + i), v3 = load8u(r3 + i)
                s0 += W.even(v0) * xe + W.odd(v0) * xo
                s1 += W.even(v1) * xe + W.odd(v1) * xo
                s2 += W.even(v2) * xe + W.odd(v2) * xo
                s3 += W.even(v3) * xe + W.odd(v3) * xo
                i += 16
            }
            var t0 = s0.sum(), t1 = s1.sum(), t2 = s2.sum(), t3 = s3.sum()
            while i < k {
                let xv = x[i]
                t0 += W.scalar(r0[i]) * xv; t1 += W.scalar(r1[i]) * xv; t2 += W.scalar(r2[i]) * xv; t3 += W.scalar(r3[i]) * xv
                i += 1
            }
            if acc { y[j] += t0; y[j + 1] += t1; y[j + 2] += t2; y[j + 3] += t3 } else { y[j] = t0; y[j + 1] = t1; y[j + 2] = t2; y[j + 3] = t3 }
            j += 4
        }
        while j < rows.upperBound {
            let r = w + j * k
            var s = SIMD8<Float>()
            var i = 0
            while i < k16 {
                let xv = load16(x + i)
                let v = load8u(r + i)
                s += W.even(v) * xv.evenHalf + W.odd(v) * xv.oddHalf
                i += 16
            }
            var t = s.sum()
            while i < k { t += W.scalar(r[i]) * x[i]; i += 1 }
            if acc { y[j] += t } else { y[j] = t }
            j += 1
        }
    }
}
