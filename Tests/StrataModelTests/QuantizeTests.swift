import Foundation
import Testing
@testable import Strata
@testable import StrataFormats
@testable import StrataModels
import StrataTensor
import StrataTestSupport

// strata quantize: ggml's reference quantizers against gguf-py's blocks (Q8_0, Q4_0, Q4_1, Q5_0) and
// error bounds (Q4_K, Q5_K, Q6_K); whole folders written as GGUF and read back: every tensor the original
// within its type's error, Q/K rows in llama.cpp's order, the tokenizer giving the folder's ids.

@Suite struct QuantizeTests {
    /// The "tiny" preset synthesized once for every test case (static lets initialize once).
    static let tinyFolder: String = {
        let dir = Fixtures.scratch + "/quantize-src"
        try! Synth.write(preset: Synth.preset("tiny"), dtype: .f32, seed: 3, to: dir)
        return dir
    }()

    struct Reference: Decodable {
        let x: String, q8_0: String, q4_0: String, q4_1: String, q5_0: String, mxfp4: String
        /// per type: [blocks, gguf-py's dequantization of them as float32], hex
        let dequant: [String: [String]]
    }
    static func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.root + "/gguf/quant_reference.json")))
    }
    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = [], it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    @Test func legacyBlocksAreGGUFPysBytes() throws {
        let ref = try Self.reference()
        let xb = Self.bytes(ref.x)
        let x = xb.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(x.count == 1024)
        for (dtype, hex) in [(DType.q8_0, ref.q8_0), (.q4_0, ref.q4_0), (.q4_1, ref.q4_1), (.q5_0, ref.q5_0), (.mxfp4, ref.mxfp4)] {
            var out = [UInt8](repeating: 0, count: dtype.bytes(elements: 1024))
            x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBytes { Quantizer.quantize(xp.baseAddress!, count: 1024, to: dtype, into: $0.baseAddress!) } }
            #expect(out == Self.bytes(hex), "\(dtype)")
        }
    }

    /// K-quants: the reference quantizers' error on Gaussian-like rows is what the formats give
    /// (about 2^-bits of the range), and re-quantizing the dequantized values is stable.
    @Test(arguments: Quantizer.types)
    func quantizationErrorIsTheFormats(dtype: DType) {
        var rng = TestRNG(11)
        let n = 8 * 256
        let x = (0..<n).map { _ in rng.float() + rng.float() + rng.float() }
        var q = [UInt8](repeating: 0, count: dtype.bytes(elements: n))
        var y = [Float](repeating: 0, count: n)
        x.withUnsafeBufferPointer { xp in q.withUnsafeMutableBytes { Quantizer.quantize(xp.baseAddress!, count: n, to: dtype, into: $0.baseAddress!) } }
        q.withUnsafeBytes { Kernels.dequantize($0.baseAddress!, dtype: dtype, &y, count: n) }
        let rms = (x.map { $0 * $0 }.reduce(0, +) / Float(n)).squareRoot()
        let err = (zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(n)).squareRoot() / rms
        let bound: [DType: Float] = [.mxfp4: 0.14, .q8_0: 0.006, .q6_k: 0.02, .q5_k: 0.04, .q5_0: 0.06, .q4_k: 0.08, .q4_1: 0.1, .q4_0: 0.12]
        #expect(err < bound[dtype]!, "\(dtype): relative RMS error \(err)")
        print("quantize \(dtype): relative RMS error \(err)")
    }

    @Test func llamaSchemeTypesFollowLlamaQuantize() {
        // Q4_K_M: output Q6_K; attn_v and ffn_down Q6_K on the first and last eighth and every third layer between
        let layers = 22
        let v = (0..<layers).filter { QuantizeModel.type(gguf: "blk.\($0).attn_v.weight", shape: [256, 2048], scheme: .q4_k_m, layers: layers) == .q6_k }
        #expect(v == [0, 1, 4, 7, 10, 13, 16, 19, 20, 21])
        #expect(QuantizeModel.type(gguf: "output.weight", shape: [32000, 2048], scheme: .q4_k_m, layers: layers) == .q6_k)
        #expect(QuantizeModel.type(gguf: "blk.3.attn_q.weight", shape: [2048, 2048], scheme: .q4_k_m, layers: layers) == .q4_k)
        #expect(QuantizeModel.type(gguf: "blk.3.attn_norm.weight", shape: [2048], scheme: .q4_k_m, layers: layers) == .f32)
        // rows that are not whole blocks fall back
        #expect(QuantizeModel.type(gguf: "blk.3.attn_q.weight", shape: [48, 96], scheme: .q4_k_m, layers: layers) == .q8_0)
        #expect(QuantizeModel.type(gguf: "blk.3.attn_q.weight", shape: [48, 48], scheme: .q8_0, layers: layers) == .f16)
        // Q5_K_M: the same rule over Q5_K; Q4_1 and Q5_0: Q6_K for the output only
        let v5 = (0..<layers).filter { QuantizeModel.type(gguf: "blk.\($0).ffn_down.weight", shape: [2048, 5632], scheme: .q5_k_m, layers: layers) == .q6_k }
        #expect(v5 == v)
        #expect(QuantizeModel.type(gguf: "blk.3.attn_q.weight", shape: [2048, 2048], scheme: .q5_k_m, layers: layers) == .q5_k)
        for (scheme, t) in [(QuantizeModel.Scheme.q4_1, DType.q4_1), (.q5_0, .q5_0)] {
            #expect(QuantizeModel.type(gguf: "output.weight", shape: [32000, 2048], scheme: scheme, layers: layers) == .q6_k)
            #expect(QuantizeModel.type(gguf: "blk.0.attn_v.weight", shape: [256, 2048], scheme: scheme, layers: layers) == t)
        }
    }

    /// A NaN among the weights: a typed error naming the tensor and row, not a trap in the
    /// quantizer's float-to-int conversion, and no file left behind.
    @Test func aNaNWeightIsRefusedByName() throws {
        let dir = try NonFiniteTests.nanModel(tensor: "model.layers.1.mlp.down_proj.weight", source: Self.tinyFolder)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = Fixtures.scratch + "/nan-\(UUID().uuidString).gguf"
        for scheme in [QuantizeModel.Scheme.q8_0, .q4_k_m] {
            #expect {
                _ = try QuantizeModel.run(folder: try ModelFolder(path: dir), scheme: scheme, out: out)
            } throws: { e in
                guard case let SafetensorsError.nonFiniteValue(_, tensor, row) = e else { return false }
                return tensor == "model.layers.1.mlp.down_proj.weight" && row == 0
            }
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    /// A synthesized Llama folder (byte-level tokenizer) quantized and read back.
    @Test(arguments: QuantizeModel.Scheme.allCases)
    func quantizedFolderReadsBack(scheme: QuantizeModel.Scheme) throws {
        let dir = Self.tinyFolder
        let folder = try ModelFolder(path: dir)
        let out = Fixtures.scratch + "/tiny-\(scheme.rawValue).gguf"
        let summary = try QuantizeModel.run(folder: folder, scheme: scheme, out: out)
        let g = try ModelFolder(path: out)
        #expect(g.spec == folder.spec)
        let src = try folder.requireCheckpoint(), dst = try g.requireCheckpoint()
        #expect(Set(src.tensorNames) == Set(dst.tensorNames))
        #expect(summary.bytes == dst.tensorNames.compactMap { dst.entry($0)?.byteCount }.reduce(0, +))
        for name in src.tensorNames {
            let a = try src.tensor(name).toArray()
            var b = try dst.tensor(name).toArray()
            let e = try #require(dst.entry(name))
            if name.hasSuffix("q_proj.weight") || name.hasSuffix("k_proj.weight") {
                // llama.cpp's row order: put it back to compare
                let rows = e.shape[0], k = e.shape[1]
                let heads = name.hasSuffix("q_proj.weight") ? folder.spec.heads : folder.spec.kvHeads
                let perm = GGUFExport.permutedRows(rows: rows, heads: heads)
                var back = b
                for r in 0..<rows { for i in 0..<k { back[perm[r] * k + i] = b[r * k + i] } }
                b = back
            }
            let rms = (a.map { $0 * $0 }.reduce(0, +) / Float(a.count)).squareRoot()
            let err = (zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(a.count)).squareRoot() / max(rms, 1e-30)
            let bound: Float = e.dtype == .f32 ? 0 : e.dtype == .q8_0 ? 0.006 : e.dtype == .q6_k ? 0.02 : 0.12
            #expect(err <= bound, "\(scheme) \(name) (\(e.rawDType)): relative RMS error \(err)")
        }
        // the storage advice's bytes for this scheme (from the folder, before any file) are the file's
        let advised = StorageAdvice.bytes(folder: folder, storage: scheme.rawValue)
        let inv = try WeightInventory(folder: g)
        #expect(advised.layers == inv.layerBytes, "\(scheme)")
        #expect(advised.layers.reduce(0, +) + advised.other == inv.totalBytes - inv.coldBytes, "\(scheme)")
        // the tokenizer written as tokenizer.ggml.* gives the folder's ids
        let t1 = try #require(folder.tokenizer), t2 = try #require(g.tokenizer)
        for text in ["Hello world", " leading space", "numbers 1234567890, it's", "Caf\u{e9} \u{6771}\u{4eac} \u{1F600}", ""] {
            #expect(try t1.encode(text) == t2.encode(text), "\(text.debugDescription)")
        }
        // and the model runs: greedy decoding under exact activations
        let loaded = try LoadedModel(directory: out)
        var p = SamplingParameters.greedy
        p.maxTokens = 4
        p.stopAtEOS = false
        #expect(try Generator(loaded).generate(promptIDs: [1, 2, 3], parameters: p).ids.count == 4)
    }

    /// A SentencePiece-style folder (byte fallback, ▁) whose rows are not whole blocks: f16
    /// fallback, logits within f16 rounding of the folder's, tokenizer ids the HF cases'.
    @Test func sentencePieceFolderWithOddShapes() throws {
        let dir = Fixtures.model("llama-gqa")
        let folder = try ModelFolder(path: dir)
        let out = Fixtures.scratch + "/llama-gqa-q8_0.gguf"
        _ = try QuantizeModel.run(folder: folder, scheme: .q8_0, out: out)
        let g = try ModelFolder(path: out)
        let ref = try Fixtures.reference("llama-gqa")
        let a = try folder.load().logits(ref.sequences[0].map(Int32.init))
        let b = try g.load().logits(ref.sequences[0].map(Int32.init))
        var worst: Float = 0, scale: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, zip(x, y).map { abs($0 - $1) }.max()!); scale = max(scale, x.map(abs).max()!) }
        #expect(worst / scale < 5e-3, "max |diff| \(worst) of \(scale)")
        struct Cases: Decodable { struct C: Decodable { let text: String; let ids: [Int] }; let cases: [C] }
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.tokenizer("sp-legacy") + "/cases.json")))
        let tok = try #require(g.tokenizer)
        // (a non-special added token that tokenizers matches after normalization, SPECIAL_A here,
        // has no such flag in GGUF: llama.cpp reads it pre-normalized too, so that case is left out)
        for c in cases.cases where !c.text.contains("SPECIAL_A") { #expect(try tok.encode(c.text) == c.ids, "\(c.text.debugDescription)") }
    }

    @Test func refusesWhatItCannotWrite() throws {
        // a GGUF as input, an architecture without an export, a missing folder
        #expect(throws: ConfigError.self) { try QuantizeModel.run(folder: ModelFolder(path: GGUFFixtures.path("llama-q8_0")), scheme: .q8_0, out: Fixtures.scratch + "/x.gguf") }
        #expect(throws: ConfigError.self) { try QuantizeModel.run(folder: ModelFolder(path: Fixtures.model("gemma2")), scheme: .q8_0, out: Fixtures.scratch + "/x.gguf") }
        #expect(!FileManager.default.fileExists(atPath: Fixtures.scratch + "/x.gguf.partial"))
    }
}
