import StrataTestSupport
import Testing
import Foundation
@testable import StrataTensor

// Tolerances: f32 GEMM vs a Double-accumulated naive loop: 1e-5 relative to sqrt(K)
// (K <= 64 here, values in [-1,1]) -> we use 1e-4 absolute. Elementwise ops: 1e-6 absolute
// (same formula, same precision). Conversions: exact (bit-for-bit).

@Suite struct TensorViewTests {
    @Test func sliceReshapeTransposeShareStorage() {
        var rng = TestRNG(1)
        let t = rng.tensor([7, 13])
        let s = t.slice(dim: 0, 2..<5)
        #expect(s.shape == [3, 13])
        #expect(s.storage === t.storage)
        #expect(s[1, 4] == t[3, 4])
        let tr = t.transposed()
        #expect(tr.shape == [13, 7])
        #expect(tr[4, 3] == t[3, 4])
        #expect(tr.storage === t.storage)
        let r = t.reshaped([13, 7])
        #expect(r[1, 0] == t.toArray()[7])
        let cols = t.slice(dim: 1, 3..<8)
        #expect(cols.shape == [7, 5] && !cols.isContiguous)
        #expect(cols.toArray()[5] == t[1, 3])
        // writes through a view are seen by the parent
        s[0, 0] = 42
        #expect(t[2, 0] == 42)
    }

    @Test func arenaSlicesAreAlignedAndDisjoint() {
        let arena = Arena(capacity: 4096)
        let a = arena.tensor([3, 5])
        let b = arena.tensor([7])
        #expect(Int(bitPattern: a.rawPointer) % 64 == 0)
        #expect(Int(bitPattern: b.rawPointer) % 64 == 0)
        #expect(b.rawPointer - a.rawPointer >= 60)
        a[2, 4] = 1; b[6] = 2
        #expect(a[2, 4] == 1 && b[6] == 2)
        #expect(a.storage.kind == .arena)
    }

    @Test func shapeErrorFromInputIsThrownAndNamed() {
        let t = Tensor(zeros: [2, 3])
        #expect(throws: TensorError.shapeMismatch(context: "w.weight", expected: [3, 2], actual: [2, 3])) {
            try t.expectShape([3, 2], "w.weight")
        }
        let e = TensorError.shapeMismatch(context: "w.weight", expected: [3, 2], actual: [2, 3])
        #expect(e.description.contains("w.weight") && e.description.contains("[3, 2]") && e.description.contains("[2, 3]"))
    }
}

@Suite struct HalfTests {
    @Test func f16ExhaustiveRoundTripMatchesSwiftFloat16() {
        // every one of the 65536 f16 bit patterns: to f32 matches Swift's Float16, and back is identity
        for bits in 0...UInt16.max {
            let f = HalfConversion.f16ToF32(bits)
            let ref = Float(Float16(bitPattern: bits))
            if ref.isNaN {
                #expect(f.isNaN)
                #expect(HalfConversion.f32ToF16(f) & 0x7C00 == 0x7C00 && HalfConversion.f32ToF16(f) & 0x3FF != 0)
            } else {
                #expect(f.bitPattern == ref.bitPattern, "f16 \(bits)")
                #expect(HalfConversion.f32ToF16(f) == bits, "f16 round trip \(bits)")
            }
        }
    }

    @Test func f32ToF16RoundsLikeSwift() {
        var rng = TestRNG(7)
        let specials: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, 70000, -70000, .infinity, -.infinity,
                                 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9, 3.0e-5, 0.1, 1.0009765625, 1.00048828125]
        var values = specials
        for _ in 0..<100_000 {
            let e = Float(Int(rng.next() % 40) - 28)
            values.append(rng.float() * powf(2, e))
        }
        for v in values {
            #expect(HalfConversion.f32ToF16(v) == Float16(v).bitPattern, "f32 \(v)")
        }
        #expect(HalfConversion.f32ToF16(.nan) & 0x7FFF > 0x7C00)
    }

    @Test func bf16RoundTripAndRounding() {
        for bits in stride(from: 0, through: 0xFFFF, by: 1) {
            let b = UInt16(bits)
            let f = HalfConversion.bf16ToF32(b)
            if f.isNaN { #expect(HalfConversion.f32ToBF16(f) & 0x7FFF > 0x7F80); continue }
            #expect(HalfConversion.f32ToBF16(f) == b)
        }
        // round to nearest even against a Double reference
        var rng = TestRNG(9)
        for _ in 0..<100_000 {
            let v = rng.float() * powf(2, Float(Int(rng.next() % 60) - 30))
            let r = HalfConversion.bf16ToF32(HalfConversion.f32ToBF16(v))
            let lo = HalfConversion.bf16ToF32(UInt16(v.bitPattern >> 16))
            let hi = HalfConversion.bf16ToF32(UInt16(v.bitPattern >> 16) + 1)
            let dl = abs(Double(v) - Double(lo)), dh = abs(Double(v) - Double(hi))
            #expect(r == (dl < dh ? lo : (dh < dl ? hi : ((v.bitPattern >> 16) & 1 == 0 ? lo : hi))))
        }
        // subnormals, inf survive
        #expect(HalfConversion.bf16ToF32(HalfConversion.f32ToBF16(.infinity)) == .infinity)
        let sub = Float(bitPattern: 0x0001_0000)
        #expect(HalfConversion.bf16ToF32(HalfConversion.f32ToBF16(sub)) == sub)
    }

    @Test func f16TensorViewsConvert() {
        let t = Tensor(zeros: [3, 5], dtype: .f16)
        let p = t.rawPointer.assumingMemoryBound(to: UInt16.self)
        for i in 0..<15 { p[i] = Float16(Float(i) * 0.5).bitPattern }
        let c = t.transposed().contiguousF32()
        #expect(c.shape == [5, 3])
        #expect(c[4, 2] == 7.0)  // t[2,4] = (2*5+4)*0.5
    }
}

@Suite struct GEMMTests {
    @Test(arguments: [(7, 13, 5), (1, 9, 4), (16, 33, 17), (5, 1, 3), (64, 64, 64)])
    func matmulMatchesNaive(m: Int, k: Int, n: Int) {
        var rng = TestRNG(UInt64(m * 1000 + k * 10 + n))
        let a = rng.tensor([m, k]), b = rng.tensor([k, n])
        #expect(maxAbsDiff(a.matmul(b).toArray(), naiveMatmul(a, b)) < 1e-4)
        // transposed views: (B^T)^T A^T
        let at = rng.tensor([k, m]).transposed()   // [m, k] view, column-major underneath
        let bt = rng.tensor([n, k]).transposed()   // [k, n]
        #expect(maxAbsDiff(at.matmul(bt).toArray(), naiveMatmul(at, bt)) < 1e-4)
        // strided row view: columns 2..<2+k of a wider matrix
        let wide = rng.tensor([m, k + 5]).slice(dim: 1, 2..<(2 + k))
        #expect(maxAbsDiff(wide.matmul(b).toArray(), naiveMatmul(wide, b)) < 1e-4)
        // a non-unit-stride view in both dims (every other row) falls back to a copy
        let every2 = rng.tensor([2 * m, k]).reshaped([m, 2 * k]).slice(dim: 1, 0..<k)
        #expect(maxAbsDiff(every2.matmul(b).toArray(), naiveMatmul(every2, b)) < 1e-4)
    }

    @Test(arguments: [1, 2, 7])
    func linearMatchesNaiveIncludingGemvRow(m: Int) {
        var rng = TestRNG(UInt64(m))
        let x = rng.tensor([m, 13]), w = rng.tensor([5, 13]), bias = rng.tensor([5])
        let y = x.linear(weight: w, bias: bias).toArray()
        var ref = naiveMatmul(x, w.transposed())
        for i in 0..<m { for j in 0..<5 { ref[i * 5 + j] += bias[j] } }
        #expect(maxAbsDiff(y, ref) < 1e-4)
        // pointer form, both paths (M == 1 takes sgemv)
        let out = Tensor(zeros: [m, 5])
        BLAS.linear(x: x.f32, rows: m, inFeatures: 13, weight: w.f32, outFeatures: 5, bias: bias.f32, y: out.f32)
        #expect(maxAbsDiff(out.toArray(), ref) < 1e-4)
    }

    @Test func f16WeightsAreConverted() {
        var rng = TestRNG(3)
        let x = rng.tensor([3, 7])
        let w16 = Tensor(zeros: [4, 7], dtype: .f16)
        let p = w16.rawPointer.assumingMemoryBound(to: UInt16.self)
        for i in 0..<28 { p[i] = HalfConversion.f32ToF16(rng.float()) }
        #expect(maxAbsDiff(x.linear(weight: w16).toArray(), naiveMatmul(x, w16.transposed())) < 1e-4)
    }

    @Test func stridedBatchedMatchesPerBatch() {
        var rng = TestRNG(11)
        let a = rng.tensor([3, 4, 6]), b = rng.tensor([3, 6, 5])
        let c = a.matmul(b)
        for i in 0..<3 {
            let ai = Tensor(Array(a.toArray()[(i * 24)..<(i * 24 + 24)]), shape: [4, 6])
            let bi = Tensor(Array(b.toArray()[(i * 30)..<(i * 30 + 30)]), shape: [6, 5])
            #expect(maxAbsDiff(Array(c.toArray()[(i * 20)..<(i * 20 + 20)]), naiveMatmul(ai, bi)) < 1e-4)
        }
        // pointer form with broadcast B (stride 0)
        let out = Tensor(zeros: [3, 4, 5])
        let b0 = rng.tensor([6, 5])
        BLAS.sgemmStridedBatched(m: 4, n: 5, k: 6, a: a.f32, lda: 6, strideA: 24, b: b0.f32, ldb: 5, strideB: 0,
                                 c: out.f32, ldc: 5, strideC: 20, batch: 3)
        #expect(maxAbsDiff(Array(out.toArray()[40..<60]), naiveMatmul(a.slice(dim: 0, 2..<3).reshaped([4, 6]), b0)) < 1e-4)
    }

    @Test func leastSquaresFitsALine() {
        // y = 2 + 3x exactly
        let xs: [Double] = [0, 1, 2, 3, 4]
        let a: [Double] = xs.flatMap { x -> [Double] in [1, x] }
        let sol = BLAS.leastSquares(a: a, rows: 5, cols: 2, b: xs.map { 2 + 3 * $0 })!
        #expect(abs(sol[0] - 2) < 1e-9 && abs(sol[1] - 3) < 1e-9)
    }
}

@Suite struct FileIOTests {
    @Test func callsThroughTheOneFileNameWhatFailed() throws {
        let dir = NSTemporaryDirectory() + "strata-fileio-\(FileIO.processID)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // O_DIRECT comes from the platform headers (Linux: 0o40000 on x86-64, 0o200000 on arm64)
        #if os(Linux) && arch(x86_64)
        #expect(FileIO.oDirect == 0o40000)
        #endif
        let path = dir + "/a.bin"
        let fd = try FileIO.createWrite(path)
        let bytes: [UInt8] = Array(0..<200)
        try bytes.withUnsafeBytes { try FileIO.pwrite(fd: fd, path: path, from: $0.baseAddress!, count: 200, offset: 0) }
        try FileIO.sync(fd: fd, path: path)
        FileIO.closeFile(fd)
        #expect(try FileIO.read(path: path, offset: 10, count: 5) == [10, 11, 12, 13, 14])
        // a sync of a bad descriptor, a rename into a missing folder, a read past the end
        #expect { try FileIO.sync(fd: -1, path: path) } throws: { "\($0)".contains(path) && "\($0)".contains("fsync") }
        #expect { try FileIO.rename(path, to: dir + "/missing/b.bin") } throws: { "\($0)".contains(path) && "\($0)".contains("missing/b.bin") }
        #expect { try FileIO.read(path: path, offset: 190, count: 20) } throws: { $0 as? FileError == .unexpectedEOF(path: path, offset: 190, count: 20) }
        try FileIO.rename(path, to: dir + "/b.bin")
        #expect(try FileIO.size(path: dir + "/b.bin") == 200)
        #expect(FileIO.environment("STRATA_SURELY_UNSET_\(FileIO.processID)") == nil)
    }
}
