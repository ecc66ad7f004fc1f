import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct MatmulDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul-demo",
        abstract: "Multiply square matrices through Strata's BLAS wrapper and print GFLOP/s.")
    @OptionGroup var threads: ThreadOption
    @Option(name: .customLong("sizes"), parsing: .upToNextOption, help: "Matrix sizes: 256,512 or 256 512.") var sizeLists: [IntList] = [IntList([256, 512, 1024, 2048])]
    var sizes: [Int] { IntList.all(sizeLists) }
    @Option(help: "Repeats per size (the median is printed).") var repeats: Int = 5

    func run() throws {
        try threads.apply()
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
        let m = MachineInfo.current()
        print("cpu: \(m.cpu), cores: \(m.cores), threads: \(m.threads)")
        print("OpenBLAS core: \(m.openBLASCore)  (\(m.openBLASConfig))")
        print("size    median ms    GFLOP/s")
        for n in sizes {
            guard n >= 1 else { throw ValidationError("matrix size must be positive, got \(n)") }
            let a = Tensor(zeros: [n, n]), b = Tensor(zeros: [n, n]), c = Tensor(zeros: [n, n])
            for i in 0..<(n * n) { a.f32[i] = Float(i % 7) * 0.1; b.f32[i] = Float(i % 5) * 0.1 }
            a.matmul(b, into: c)
            var times: [Double] = []
            for _ in 0..<repeats {
                let t0 = now()
                a.matmul(b, into: c)
                times.append(now() - t0)
            }
            let med = median(times)
            print(String(format: "%-6d %10.2f %10.1f", n, med * 1000, 2 * Double(n) * Double(n) * Double(n) / med / 1e9))
        }
    }
}
