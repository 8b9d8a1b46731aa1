#include "cli/conversion.h"

#include <cstdio>

#include "io/optimizer_moments.h"
#include "train/checkpoint_store.h"

namespace escale::cli {

Status RunConversion(
    const ConversionArgs& a,
    const std::function<Result<std::string>(const surgery::ConvertOptions&)>& convert) {
  surgery::ConvertOptions conv;
  if (!a.dtype.empty()) {
    ESCALE_ASSIGN_OR_RETURN(conv.dtype, surgery::ParseOutputDType(a.dtype));
  }
  conv.dry_run = a.dry_run;
  conv.overwrite = a.overwrite;
  if (!a.dry_run && a.dst.empty())
    return InvalidArgument("give the output directory DST (or --dry-run)");
  MomentMap moments;
  if (a.carry_moments && !a.dry_run) {
    ESCALE_ASSIGN_OR_RETURN(moments, ReadCheckpointMoments(a.src));
    conv.moments = &moments;
  }
  ESCALE_ASSIGN_OR_RETURN(std::string text, convert(conv));
  std::fputs(text.c_str(), stdout);
  if (!a.dry_run) std::printf("wrote %s\n", a.dst.c_str());
  return Status::Ok();
}

}  // namespace escale::cli
