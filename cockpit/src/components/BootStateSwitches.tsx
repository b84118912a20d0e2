// Which boot states an extension is enabled for: one switch per state, each with an
// "Apply now" choice. Applying now links or unlinks the image on the running system and
// refreshes the merge; that only means something for a state that concerns this boot,
// so elsewhere the choice is disabled and says why.

import { useState } from "react";
import { Checkbox } from "@patternfly/react-core/dist/esm/components/Checkbox/index.js";
import { Flex, FlexItem } from "@patternfly/react-core/dist/esm/layouts/Flex/index.js";
import { HelperText, HelperTextItem } from "@patternfly/react-core/dist/esm/components/HelperText/index.js";
import { Spinner } from "@patternfly/react-core/dist/esm/components/Spinner/index.js";
import { Switch } from "@patternfly/react-core/dist/esm/components/Switch/index.js";

import { type BootState, type CurrentBoot, concernsThisBoot } from "../api/contract";
import { describeFailure } from "../api/errors";
import type { ExtensionInfo, ExtensionsService } from "../api/service";

/** Which states "Apply now" can act on, said once for all rows. */
function thisBoot(current: CurrentBoot): string {
  return current === "none"
    ? "This is not a Kairos boot: only common applies to the running system."
    : `This is a Kairos ${current} boot: ${current} and common apply to the running system.`;
}

function StateRow(props: {
  service: ExtensionsService;
  extension: ExtensionInfo;
  state: BootState;
  current: CurrentBoot;
  admin: boolean;
  onError: (message: string) => void;
}) {
  const { service, extension, state, current, admin, onError } = props;
  const [now, setNow] = useState(false);
  const [pending, setPending] = useState(false);
  const enabled = extension.enabled.includes(state);
  const applies = concernsThisBoot(state, current);
  const id = `${extension.name}-${state}`;

  const toggle = (checked: boolean) => {
    setPending(true);
    service
      .setEnabled(extension, state, checked, now && applies)
      .catch((error: unknown) => onError(describeFailure(error, "manage")))
      .finally(() => setPending(false));
  };

  return (
    <Flex alignItems={{ default: "alignItemsFlexStart" }} flexWrap={{ default: "nowrap" }} spaceItems={{ default: "spaceItemsLg" }}>
      <FlexItem className="kx-state-switch">
        <Switch
          id={`${id}-switch`}
          label={state}
          aria-label={`Enable ${extension.name} for ${state}`}
          isChecked={enabled}
          isDisabled={!admin || pending}
          onChange={(_e, checked) => toggle(checked)}
        />
      </FlexItem>
      <FlexItem>
        <Checkbox
          id={`${id}-now`}
          label="Apply now"
          aria-label={`Apply now: ${state} for ${extension.name} on the running system`}
          isChecked={now && applies}
          isDisabled={!admin || !applies || pending}
          onChange={(_e, checked) => setNow(checked)}
          description={applies ? undefined : `Not this boot: takes effect at the next ${state} boot.`}
        />
      </FlexItem>
      {pending && (
        <FlexItem>
          <Spinner size="md" aria-label={`Changing ${state} for ${extension.name}`} />
        </FlexItem>
      )}
    </Flex>
  );
}

export function BootStateSwitches(props: {
  service: ExtensionsService;
  extension: ExtensionInfo;
  states: BootState[];
  current: CurrentBoot;
  admin: boolean;
  onError: (message: string) => void;
}) {
  return (
    <div role="group" aria-label={`Boot states of ${props.extension.name}`}>
      <HelperText className="kx-this-boot">
        <HelperTextItem>{thisBoot(props.current)}</HelperTextItem>
      </HelperText>
      <Flex direction={{ default: "column" }} spaceItems={{ default: "spaceItemsSm" }}>
        {props.states.map((state) => (
          <StateRow key={state} {...props} state={state} />
        ))}
      </Flex>
      {!props.admin && (
        <HelperText>
          <HelperTextItem>Turn on administrative access to change boot states.</HelperTextItem>
        </HelperText>
      )}
    </div>
  );
}
