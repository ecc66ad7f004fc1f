import StrataTestSupport
import Testing
import Foundation
@testable import StrataTensor

// Every few-row linear kernel, on every instruction-set path this CPU runs, against a naive
// Double-accumulated loop over the stored (rounded) weights. Tolerance: f32 accumulation of K
// products of magnitude <= 1 differs from the Double sum by well under 1e-6 * sqrt(K) * 4.

/// Weights of `dtype` holding `w` rounded to the dtype, and those rounded values as f32.
private func stored(_ w: [Float], _ n: Int, _ k: Int, _ dtype: DType) -> (Tensor, [Float]) {
    let wt = Tensor(zeros: [n, k], dtype: dtype)
    switch dtype {
    case .f32: wt.f32.update(from: w, count: n * k)
    case .f16: HalfConversion.f32ToF16(w, wt.rawPointer.assumingMemoryBound(to: UInt16.self), count: n * k)
    case .bf16: HalfConversion.f32ToBF16(w, wt.rawPointer.assumingMemoryBound(to: UInt16.self), count: n * k)
    default: fatalError("QuantKernelTests covers \(dtype)")
    }
    return (wt, wt.toArray())
}

@Suite struct KernelTests {
    static let shapes: [(n: Int, k: Int)] = [(1, 1), (7, 13), (5, 16), (9, 37), (3, 31), (12, 40), (130, 70), (67, 2049), (13, 4133), (260, 64)]

    // 33-64 rows take the few-row kernel only where it beats OpenBLAS: over an sgemm on AVX2
    // kernels (OpenBLAS's Haswell or Zen core) with the AVX-512 path; elsewhere 32
    @Test func rowLimitFollowsOpenBLASCore() {
        #expect(Kernels.sgemmCoreIsAVX2OrOlder("Haswell"))
        #expect(Kernels.sgemmCoreIsAVX2OrOlder("ZEN"))
        #expect(!Kernels.sgemmCoreIsAVX2OrOlder("SkylakeX"))
        #expect(!Kernels.sgemmCoreIsAVX2OrOlder("Cooperlake"))
        #expect(!Kernels.sgemmCoreIsAVX2OrOlder("SapphireRapids"))
        #expect(!Kernels.sgemmCoreIsAVX2OrOlder("SomeFutureCore"))
        let expected = Kernels.path == .avx512 && Kernels.sgemmCoreIsAVX2OrOlder(BLAS.coreName) ? 64 : 32
        for d in DType.floats { #expect(Kernels.maxRows(dtype: d) == expected, "\(d) over OpenBLAS \(BLAS.coreName)") }
        #expect(Kernels.maxRows(dtype: .q8_0) == Kernels.maxRowsQuantized)
    }

    @Test func everyPathThisCPUHasIsOffered() {
        #expect(Kernels.supportedPaths.first == .portable)
        #expect(Kernels.bestPath.isSupported)
        #expect(Kernels.supportedPaths.contains(Kernels.bestPath))
    }

    // 5-33 rows take the K-tiled walk (groups of 4 rows and a 1-3 row tail; over 32 rows in two
    // chunks), over blocks of 6, 4 and 1 weight rows: n = 12 is two 6s, 7 and 13 a single row
    // after the 6s, 130 a 4 after them, 9 and 260 a remainder of 3 or 2 taken as 4s
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 33, 64])
    func linearRowsMatchNaiveOnEveryPathAndDType(m: Int) {
        for (n, k) in Self.shapes {
            var rng = TestRNG(UInt64(n * 1000 + k * 10 + m))
            let ldx = k + 3, ldy = n + 2  // strided rows
            let x = rng.floats(m * ldx)
            let w = rng.floats(n * k)
            for dtype in DType.floats {
                let (wt, wf) = stored(w, n, k, dtype)
                var ref = [Double](repeating: 0, count: m * n)
                for r in 0..<m { for j in 0..<n {
                    var s = 0.0
                    for i in 0..<k { s += Double(wf[j * k + i]) * Double(x[r * ldx + i]) }
                    ref[r * n + j] = s
                } }
                let tol = 4e-6 * max(1, Double(k).squareRoot())
                for path in Kernels.supportedPaths {
                    for acc in [false, true] {
                        var y = [Float](repeating: 0.5, count: m * ldy)
                        x.withUnsafeBufferPointer { xp in
                            y.withUnsafeMutableBufferPointer { yp in
                                Kernels.linearRows(path: path, weight: wt.rawPointer, dtype: dtype, outFeatures: n, inFeatures: k,
                                                   x: xp.baseAddress!, rows: m, ldx: ldx, y: yp.baseAddress!, ldy: ldy, accumulate: acc)
                            }
                        }
                        var worst = 0.0
                        for r in 0..<m { for j in 0..<n {
                            worst = max(worst, abs(Double(y[r * ldy + j]) - ref[r * n + j] - (acc ? 0.5 : 0)))
                        } }
                        #expect(worst < tol, "\(path) \(dtype) m=\(m) n=\(n) k=\(k) acc=\(acc): \(worst)")
                        // the padding between rows of y is untouched
                        for r in 0..<m { for j in n..<ldy { #expect(y[r * ldy + j] == 0.5) } }
                    }
                }
            }
        }
    }

    @Test func threadedLinearMatchesOneThread() {
        // large enough to split across the pool: 1031 output rows (not a multiple of 4), K = 777
        let n = 1031, k = 777, m = 5
        var rng = TestRNG(99)
        let x = rng.floats(m * k), w = rng.floats(n * k)
        for dtype in DType.floats {
            let (wt, _) = stored(w, n, k, dtype)
            var one = [Float](repeating: 0, count: m * n), all = [Float](repeating: 0, count: m * n)
            Kernels.linearRows(path: Kernels.path, weight: wt.rawPointer, dtype: dtype, outFeatures: n, inFeatures: k,
                               x: x, rows: m, y: &one)
            Kernels.linear(weight: wt.rawPointer, dtype: dtype, outFeatures: n, inFeatures: k, x: x, rows: m, y: &all)
            #expect(one == all, "\(dtype)")
        }
    }

    @Test func f16SpecialValuesWidenOnEveryPath() {
        // subnormals (smallest and largest), zero, -zero, 1, -1, the largest normal, a mid subnormal
        let bits: [UInt16] = [0x0001, 0x0000, 0x8000, 0x3C00, 0x03FF, 0xBC00, 0x7BFF, 0x0200,
                              0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x8001]
        let k = bits.count  // 17: one lane in the tail
        let cases: [(Int, Float)] = [(0, 5.960464477539063e-08), (4, HalfConversion.f16ToF32(0x03FF)), (6, 65504), (5, -1),
                                     (7, HalfConversion.f16ToF32(0x0200)), (16, -5.960464477539063e-08)]
        for path in Kernels.supportedPaths {
            for (lane, want) in cases {
                var x = [Float](repeating: 0, count: k); x[lane] = 1
                var y: [Float] = [0]
                bits.withUnsafeBytes {
                    Kernels.linearRows(path: path, weight: $0.baseAddress!, dtype: .f16, outFeatures: 1, inFeatures: k, x: x, rows: 1, y: &y)
                }
                #expect(y[0] == want, "\(path) lane \(lane)")
            }
            // -0 weight times 1 (and nothing else) sums to +0 or -0, never anything else
            var x = [Float](repeating: 0, count: k); x[2] = 1
            var y: [Float] = [7]
            bits.withUnsafeBytes {
                Kernels.linearRows(path: path, weight: $0.baseAddress!, dtype: .f16, outFeatures: 1, inFeatures: k, x: x, rows: 1, y: &y)
            }
            #expect(y[0] == 0)
        }
    }

    @Test func infinitiesAndNaNPropagateOnEveryPath() {
        for path in Kernels.supportedPaths {
            for (dtype, infBits, nanBits) in [(DType.f16, UInt16(0x7C00), UInt16(0x7E00)), (.bf16, 0x7F80, 0x7FC0)] {
                for (lane, k) in [(3, 16), (18, 19)] {  // in the body and in the tail
                    var x = [Float](repeating: 1, count: k)
                    var w = [UInt16](repeating: 0, count: k)
                    w[lane] = infBits
                    var y: [Float] = [0]
                    w.withUnsafeBytes { Kernels.linearRows(path: path, weight: $0.baseAddress!, dtype: dtype, outFeatures: 1, inFeatures: k, x: x, rows: 1, y: &y) }
                    #expect(y[0] == .infinity, "\(path) \(dtype) inf lane \(lane)")
                    w[lane] = infBits | 0x8000
                    w.withUnsafeBytes { Kernels.linearRows(path: path, weight: $0.baseAddress!, dtype: dtype, outFeatures: 1, inFeatures: k, x: x, rows: 1, y: &y) }
                    #expect(y[0] == -.infinity, "\(path) \(dtype) -inf lane \(lane)")
                    w[lane] = nanBits
                    w.withUnsafeBytes { Kernels.linearRows(path: path, weight: $0.baseAddress!, dtype: dtype, outFeatures: 1, inFeatures: k, x: x, rows: 1, y: &y) }
                    #expect(y[0].isNaN, "\(path) \(dtype) NaN lane \(lane)")
                    // an infinite weight times a zero activation is NaN, as IEEE says
                    w[lane] = infBits; x[lane] = 0
                    w.withUnsafeBytes { Kernels.linearRows(path: path, weight: $0.baseAddress!, dtype: dtype, outFeatures: 1, inFeatures: k, x: x, rows: 1, y: &y) }
                    #expect(y[0].isNaN, "\(path) \(dtype) inf*0 lane \(lane)")
                }
            }
        }
    }

    @Test func readSumMatchesOnEveryPath() {
        let n = 100_003
        let v = (0..<n).map { Float($0 % 7) }
        let want = v.reduce(0.0) { $0 + Double($1) }
        for path in Kernels.supportedPaths {
            for pf in [0, 512] {
                let s = v.withUnsafeBufferPointer { Kernels.readSum(path: path, $0.baseAddress!, count: n, prefetchBytes: pf) }
                #expect(Double(s) == want, "\(path) prefetch \(pf)")
            }
        }
    }

    @Test func poolRunsEveryChunkOnceIncludingNestedCalls() {
        for _ in 0..<200 {
            var hits = [Int](repeating: 0, count: 37)
            hits.withUnsafeMutableBufferPointer { hp in
                let box = UncheckedSendable(hp.baseAddress!)
                Threads.parallelFor(37) { r in
                    for i in r { box.value[i] += 1 }
                    // a nested loop runs inline on the worker
                    Threads.parallelFor(4) { _ in }
                }
            }
            #expect(hits == [Int](repeating: 1, count: 37))
        }
    }

    /// Every chunk runs once whatever the thread count (each thread's contiguous range, stealing
    /// from the others' when its own is empty; more threads than cores leaves ranges to steal),
    /// with fewer chunks than threads, and with the count changing between jobs (ranges of an
    /// earlier, wider job left behind).
    @Test func poolRangesRunEveryChunkOnceAtEveryThreadCount() {
        let before = Threads.count
        defer { Threads.set(before) }
        let counts = [2, 3, 7, 37, 200]
        var hits = [Int](repeating: 0, count: 200)
        hits.withUnsafeMutableBufferPointer { hp in
            for threads in [3, 2, 5, 1, 4, 2] {
                Threads.set(threads)
                for rep in 0..<40 {
                    let chunks = counts[rep % counts.count]
                    for i in 0..<chunks { hp[i] = 0 }
                    Threads.runChunks(chunks, context: UnsafeMutableRawPointer(hp.baseAddress!)) { ctx, c in
                        ctx!.assumingMemoryBound(to: Int.self)[c] += 1
                    }
                    #expect(Array(hp[0..<chunks]) == [Int](repeating: 1, count: chunks), "\(threads) threads, \(chunks) chunks")
                }
            }
        }
    }
}
