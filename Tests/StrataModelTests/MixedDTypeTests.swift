import Foundation
import Testing
@testable import Strata
import StrataFormats
@testable import StrataModels
import StrataTensor
import StrataTestSupport

// Hostile input II, class 1: tensors of one checkpoint each have their own dtype (an f32 token
// embedding over f16 or quantized layers is what `llama-quantize --token-embedding-type f32`
// writes). Every mix of f32/f16/bf16/Q8_0/Q4_K for the embedding, the layers and the head, over a
// prompt of 300 tokens (longer than the few-row kernel's rows, so the prefill's conversion
// scratch is used): the logits equal, within 1e-4 of the largest, those of the same weights
// dequantized to f32 (the naive reference: the all-f32 path that the fixtures check against
// transformers). Under `scripts/sanitize.sh address` this is the ASan check of the issue.

@Suite struct MixedDTypeTests {
    static let types: [DType] = [.f32, .f16, .bf16, .q8_0, .q4_k]

    /// The "tiny" preset (hidden 256, ffn 768: whole Q4_K blocks), f32.
    static let folder: String = {
        let dir = Fixtures.scratch + "/mixed-dtype-src"
        try! Synth.write(preset: Synth.preset("tiny"), dtype: .f32, seed: 5, to: dir)
        return dir
    }()

    /// `t` (f32) stored as `dtype`, and that stored tensor's values read back in f32.
    static func convert(_ t: Tensor, to dtype: DType) -> (stored: Tensor, dequantized: Tensor) {
        let n = t.count
        let stored = Tensor(storage: TensorStorage(byteCount: dtype.bytes(elements: n)), dtype: dtype, shape: t.shape)
        switch dtype {
        case .f32: memcpy(stored.rawPointer, t.rawPointer, 4 * n)
        case .f16: HalfConversion.f32ToF16(t.f32, stored.rawPointer.assumingMemoryBound(to: UInt16.self), count: n)
        case .bf16: HalfConversion.f32ToBF16(t.f32, stored.rawPointer.assumingMemoryBound(to: UInt16.self), count: n)
        default: Quantizer.quantize(t.f32, count: n, to: dtype, into: stored.rawPointer)
        }
        let back = Tensor(zeros: t.shape)
        HalfConversion.toF32(stored.rawPointer, dtype: dtype, back.f32, count: n)
        return (stored, back)
    }

    /// Every tensor of the folder in every type (converted once: quantizing is slow in debug).
    static let converted: [DType: [String: (stored: Tensor, dequantized: Tensor)]] = {
        let ckpt = try! ModelFolder(path: folder).requireCheckpoint()
        var out: [DType: [String: (stored: Tensor, dequantized: Tensor)]] = [:]
        for name in ckpt.tensorNames {
            let t = try! ckpt.tensor(name).contiguousF32()
            for d in types where d == .f32 || t.rank == 2 { out[d, default: [:]][name] = convert(t, to: d) }
        }
        return out
    }()

    /// The model with the embedding, the layers' matrices and the head stored as given, and the
    /// all-f32 model of the same (dequantized) values.
    static func models(embed: DType, layers: DType, head: DType) throws -> (mixed: CausalLM, reference: CausalLM) {
        let folder = try ModelFolder(path: Self.folder)
        var mixed: [String: Tensor] = [:], ref: [String: Tensor] = [:]
        for (name, t) in converted[.f32]! {
            let dtype: DType = t.stored.rank < 2 ? .f32 : name.contains("embed_tokens") ? embed : name.hasPrefix("lm_head") ? head : layers
            let c = converted[dtype]![name]!
            mixed[name] = c.stored
            ref[name] = c.dequantized
        }
        return (try folder.architecture.build(config: folder.config, store: MemoryWeightStore(mixed)),
                try folder.architecture.build(config: folder.config, store: MemoryWeightStore(ref)))
    }

    @Test(arguments: MixedDTypeTests.types)
    func everyMixGivesTheDequantizedLogits(embed: DType) throws {
        let saved = Kernels.activations
        Kernels.activations = .f32  // exact activations: the comparison is f32 math on both sides
        defer { Kernels.activations = saved }
        var rng = TestRNG(UInt64(17 + Self.types.firstIndex(of: embed)!))
        let prompt = (0..<300).map { _ in Int32(rng.next() % 4096) }
        for (li, layers) in Self.types.enumerated() {
            // the head: the layers' type or the embedding's, in turn
            let head = li % 2 == 0 ? layers : embed
            let (mixed, ref) = try Self.models(embed: embed, layers: layers, head: head)
            // 296 tokens at once (the prefill's conversion bands), then 4 decode steps (few-row kernels)
            let a = mixed.makeCache(capacity: 320), b = ref.makeCache(capacity: 320)
            var la = try prompt[0..<296].withUnsafeBufferPointer { Array(try mixed.forward($0, cache: a, allLogits: true)) }
            var lb = try prompt[0..<296].withUnsafeBufferPointer { Array(try ref.forward($0, cache: b, allLogits: true)) }
            for t in prompt[296...] {
                la += try [t].withUnsafeBufferPointer { Array(try mixed.forward($0, cache: a, allLogits: false)) }
                lb += try [t].withUnsafeBufferPointer { Array(try ref.forward($0, cache: b, allLogits: false)) }
            }
            #expect(la.count == 300 * 4096 && lb.count == la.count)
            let scale = max(1e-3, lb.map(abs).max() ?? 0)
            let err = maxAbsDiff(la, lb) / scale
            #expect(err < 1e-4, "embed \(embed), layers \(layers), head \(head): relative error \(err)")
        }
    }
}
