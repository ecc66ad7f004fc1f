import StrataTestSupport
import Foundation
import Testing
@testable import Strata
@testable import StrataFormats
@testable import StrataModels
import StrataTensor

/// The tests that switch the process's kernel path (`Kernels.use`) to run a model on every
/// instruction-set path this CPU has. The path is one global setting, so while one of these runs,
/// any other test in the process may compute half its numbers on one path and half on another
/// (a paged-vs-contiguous comparison failed by 6.7e-5 that way). `make test` and
/// `scripts/sanitize.sh` run this suite in a process of its own (`--skip` / `--filter
/// EveryKernelPathTests`), and its tests one after another.
@Suite(.serialized) struct EveryKernelPathTests {
    /// The model's logits on every instruction-set path of the kernels this CPU has (the few-row
    /// kernel runs every projection of these short sequences, one row per decode step).
    @Test(arguments: ["llama-gqa", "llama-gqa-f16", "llama-gqa-bf16", "qwen2"])
    func logitsMatchTransformersOnEveryKernelPath(name: String) throws {
        let model = try ModelRegistry.load(directory: Fixtures.model(name))
        let ref = try Fixtures.reference(name)
        let seq = ref.sequences[0].map(Int32.init)
        let expected = try Fixtures.referenceLogits(name, 0)
        let chosen = Kernels.path
        defer { Kernels.use(chosen) }
        for path in Kernels.supportedPaths {
            #expect(Kernels.use(path))
            let got = try model.logits(seq)
            var worst: Float = 0
            for (g, e) in zip(got, expected) { worst = max(worst, zip(g, e).map { abs($0 - $1) }.max()!) }
            #expect(worst < 1e-4, "\(name) on \(path): max |diff| \(worst)")
        }
    }

    /// Logits within 1e-4 of the largest |logit| of the reference, on every kernel path.
    @Test(arguments: ggufModels)
    func logitsMatchTransformersOnDequantizedWeights(name: String) throws {
        let folder = try ModelFolder(path: GGUFFixtures.path(name))
        let model = try folder.load()
        let ref = try GGUFFixtures.reference(name)
        #expect(model.spec.architecture == ref.architecture)
        let chosen = Kernels.path
        defer { Kernels.use(chosen) }
        for path in Kernels.supportedPaths {
            #expect(Kernels.use(path))
            for (i, seq) in ref.sequences.enumerated() {
                let expected = try GGUFFixtures.logits(name, i)
                let got = try model.logits(seq.map(Int32.init))
                var worst: Float = 0, scale: Float = 0
                for (g, e) in zip(got, expected) {
                    worst = max(worst, zip(g, e).map { abs($0 - $1) }.max()!)
                    scale = max(scale, e.map(abs).max()!)
                }
                #expect(worst / scale < 1e-4, "\(name) seq \(i) on \(path): max |diff| \(worst) of \(scale)")
            }
        }
    }
}
