import Foundation
import Testing
@testable import Strata
@testable import StrataFormats
@testable import StrataMemory
@testable import StrataModels
@testable import StrataTensor
import StrataTestSupport

// The quant types as one table: each DType is one row of the kernels' traits table and one of
// ggml's types (same name, same block); its decoding is gguf-py's to the bit; the types without
// kernels of their own (Q4_1, Q5_0, Q5_K, IQ4_NL, IQ4_XS: the generic kernels) run models batched
// and with streamed layers as the others do. (Logits against transformers and greedy tokens:
// GGUFModelTests over newTypeModels; the kernels against a naive loop on every path:
// QuantKernelTests.)

@Suite struct QuantTypeTests {
    @Test func everyTypeIsOneRowOfTheKernelsTableAndOneOfGGMLs() throws {
        for d in DType.allCases {
            #expect(d.blockElements > 0 && d.blockBytes > 0, "\(d): no row in qtypes.c")
            let g = GGMLType.of(d)
            #expect(g.blockElements == d.blockElements && g.blockBytes == d.blockBytes, "\(d): \(g)")
            #expect(g.dtype == d)
            #expect(d.isQuantized == (d.blockElements > 1))
        }
        // the kernel numbers are distinct (found by name)
        #expect(Set(Kernels.codes).count == DType.allCases.count)
        // a ggml type Strata does not read is refused by its name
        #expect(GGMLType.byName["q2_k"]?.dtype == nil)
    }

    @Test(arguments: DType.quantized)
    func dequantizationIsGGUFPysToTheBit(dtype: DType) throws {
        let ref = try QuantizeTests.reference()
        let pair = try #require(ref.dequant[dtype.rawValue], "no reference for \(dtype)")
        let raw = QuantizeTests.bytes(pair[0])
        let want = QuantizeTests.bytes(pair[1]).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(want.count == 3 * 512 && raw.count == dtype.bytes(elements: want.count))
        var got = [Float](repeating: .nan, count: want.count)
        raw.withUnsafeBytes { Kernels.dequantize($0.baseAddress!, dtype: dtype, &got, count: want.count) }
        let differing = zip(got, want).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(differing == 0, "\(dtype): \(differing) of \(want.count) values differ from gguf-py's")
        // the exact linear (f32 activations) on every path is the product with those weights
        let x: [Float] = (0..<512).map { Float(sin(Double($0) * 0.37)) }
        var ref64 = [Double](repeating: 0, count: 3), mag = ref64
        for j in 0..<3 { for i in 0..<512 { ref64[j] += Double(want[j * 512 + i]) * Double(x[i]); mag[j] += abs(Double(want[j * 512 + i]) * Double(x[i])) } }
        for path in Kernels.supportedPaths {
            var y = [Float](repeating: 0, count: 3)
            raw.withUnsafeBytes { wp in
                Kernels.linearRows(path: path, weight: wp.baseAddress!, dtype: dtype, outFeatures: 3, inFeatures: 512, x: x, rows: 1, ldx: 512,
                                   y: &y, ldy: 3, accumulate: false)
            }
            for j in 0..<3 { #expect(abs(Double(y[j]) - ref64[j]) <= 2e-6 * mag[j], "\(dtype) \(path) row \(j)") }
        }
    }

    /// Three prompts at once through the tiered run with layer 1 streamed from the file: each
    /// sequence's greedy tokens are those it gets alone from the mapped model, and the fixture's
    /// prompt gives transformers' continuation.
    @Test(arguments: newTypeModels + moeGGUFModels)
    func newTypesRunBatchedWithStreamedLayers(name: String) throws {
        let path = GGUFFixtures.path(name)
        let ref = try GGUFFixtures.reference(name)
        let greedy = SamplingParameters(temperature: 0, maxTokens: ref.greedy_continuation.count, stopAtEOS: false)
        let prompts = [ref.greedy_prompt, ref.sequences[1], Array(ref.sequences[1].dropFirst(3))]
        let loaded = try LoadedModel(directory: path)
        let alone = try prompts.map { try Generator(loaded).generate(promptIDs: $0, parameters: greedy).ids }
        #expect(alone[0] == ref.greedy_continuation, "\(name)")
        let inv = try WeightInventory(directory: path)
        let workload = Workload(batch: 3, promptTokens: 19, outputTokens: greedy.maxTokens)
        let probe = try TieredRun(directory: path, budget: nil, workload: workload)
        probe.shutdown()
        let fixed = probe.ledger.lines[.runtime]! + probe.ledger.lines[.activations]! + (probe.ledger.lines[.coldRows] ?? 0)
        let spec = try ModelFolder(path: path).spec
        let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: 16, type: .kvDefault)
        let budget = fixed + inv.otherBytes + inv.layerBytes.max()! + inv.layerBytes[0] - 1 + PlacementRule.kvBlocks(workload, blockSize: 16) * perBlock
        let run = try TieredRun(directory: path, budget: budget, workload: workload, prefetchDepth: 0)
        defer { run.shutdown() }
        // a layer streamed (a mixture: or its experts read through the expert cache)
        #expect(!run.placement.streamedLayers.isEmpty || run.placement.expertSlots > 0, "placement \(run.placement)")
        let (outs, report) = try run.run(prompts.map { GenerationRequest(prompt: $0, parameters: greedy) })
        #expect(outs.map { $0.ids } == alone, "\(name) \(outs.map { "\($0.stopReason)" })")
        #expect(report.measured.diskBytesRead > 0 && run.ledger.peak <= budget)
    }
}
